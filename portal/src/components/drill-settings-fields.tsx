import {
  DEFAULT_BOOT_CHECK,
  DRILL_POINT_CHOICES,
  type DrillChecks,
  type DrillPointChoice,
} from '../../../src/domain/drill.ts';
import type { RegisteredScript } from '../../../src/domain/model.ts';
import { useResource } from '../use-resource.ts';
import { Field } from './field.tsx';

export const POINT_CHOICE_TEXT: Record<DrillPointChoice, string> = {
  'latest-app-consistent': 'Latest app-consistent point',
  'latest-crash-consistent': 'Latest crash-consistent point',
  'random-retained': 'A random retained point (samples the history)',
};

/** A drill's settings as a form holds them: numbers as typed, so a bad one reaches the API and its refusal. */
export interface DrillSettingsForm {
  point: DrillPointChoice;
  testNetwork: string;
  timeLimitSeconds: string;
  filesystems: boolean;
  script: string;
  scriptTimeoutSeconds: string;
  bootPattern: string;
  bootTimeoutSeconds: string;
}

export const DEFAULT_DRILL_SETTINGS: DrillSettingsForm = {
  point: 'latest-crash-consistent',
  testNetwork: '',
  timeLimitSeconds: '1800',
  filesystems: true,
  script: '',
  scriptTimeoutSeconds: '300',
  bootPattern: '',
  bootTimeoutSeconds: String(DEFAULT_BOOT_CHECK.timeoutSeconds),
};

/** A schedule's settings back in the form (to edit it). */
export function drillSettingsForm(settings: {
  point: DrillPointChoice;
  testNetwork: string | null;
  timeLimitSeconds: number;
  checks: DrillChecks;
}): DrillSettingsForm {
  const boot = settings.checks.boot ?? DEFAULT_BOOT_CHECK;
  return {
    point: settings.point,
    testNetwork: settings.testNetwork ?? '',
    timeLimitSeconds: String(settings.timeLimitSeconds),
    filesystems: settings.checks.filesystems,
    script: settings.checks.script?.name ?? '',
    scriptTimeoutSeconds: String(settings.checks.script?.timeoutSeconds ?? 300),
    bootPattern: boot.consolePattern ?? '',
    bootTimeoutSeconds: String(boot.timeoutSeconds),
  };
}

/** A typed number as the API reads it; anything else is sent as typed, for the API to refuse at its field. */
export const numberOr = (text: string): number | string =>
  /^\s*-?\d+(\.\d+)?\s*$/.test(text) ? Number(text) : text;

/** The API's drill settings (POST /machines/:id/drills, and the same fields of a schedule). */
export function drillSettingsBody(form: DrillSettingsForm) {
  return {
    point: form.point,
    testNetwork: form.testNetwork.trim() || null,
    timeLimitSeconds: numberOr(form.timeLimitSeconds),
    checks: {
      filesystems: form.filesystems,
      script: form.script ? { name: form.script, timeoutSeconds: numberOr(form.scriptTimeoutSeconds) } : null,
      boot: {
        consolePattern: form.bootPattern.trim() || null,
        timeoutSeconds: numberOr(form.bootTimeoutSeconds),
      },
    },
  };
}

/** The fields of a drill's settings, each showing the API's refusal at it. */
export function DrillSettingsFields({
  form,
  onChange,
  errors,
  idPrefix,
}: {
  form: DrillSettingsForm;
  onChange: (patch: Partial<DrillSettingsForm>) => void;
  errors: Map<string, string[]>;
  idPrefix: string;
}) {
  const scripts = useResource<{ scripts: RegisteredScript[] }>('/scripts');
  const usable = (scripts.data?.scripts ?? []).filter((s) => s.problem === null);
  return (
    <>
      <Field name="point" label="Recovery point" errors={errors} idPrefix={idPrefix}>
        {(props) => (
          <select
            {...props}
            value={form.point}
            onChange={(e) => onChange({ point: e.target.value as DrillPointChoice })}
          >
            {DRILL_POINT_CHOICES.map((choice) => (
              <option key={choice} value={choice}>
                {POINT_CHOICE_TEXT[choice]}
              </option>
            ))}
          </select>
        )}
      </Field>
      <Field
        name="testNetwork"
        label={
          <>
            Test network <span className="hint">empty: the recovery site's test network</span>
          </>
        }
        errors={errors}
        idPrefix={idPrefix}
      >
        {(props) => (
          <input
            {...props}
            value={form.testNetwork}
            onChange={(e) => onChange({ testNetwork: e.target.value })}
          />
        )}
      </Field>
      <Field
        name="timeLimitSeconds"
        label={
          <>
            Time limit (seconds) <span className="hint">the drill is cleaned up and fails after it</span>
          </>
        }
        errors={errors}
        idPrefix={idPrefix}
      >
        {(props) => (
          <input
            {...props}
            inputMode="numeric"
            value={form.timeLimitSeconds}
            onChange={(e) => onChange({ timeLimitSeconds: e.target.value })}
          />
        )}
      </Field>
      <fieldset className="drill-checks">
        <legend>Checks</legend>
        <Field
          name="checks.boot.consolePattern"
          label={
            <>
              Boot: console pattern{' '}
              <span className="hint">a regular expression; empty: any console output</span>
            </>
          }
          errors={errors}
          idPrefix={idPrefix}
        >
          {(props) => (
            <input
              {...props}
              className="mono"
              value={form.bootPattern}
              onChange={(e) => onChange({ bootPattern: e.target.value })}
            />
          )}
        </Field>
        <Field
          name="checks.boot.timeoutSeconds"
          label="Boot: wait at most (seconds)"
          errors={errors}
          idPrefix={idPrefix}
        >
          {(props) => (
            <input
              {...props}
              inputMode="numeric"
              value={form.bootTimeoutSeconds}
              onChange={(e) => onChange({ bootTimeoutSeconds: e.target.value })}
            />
          )}
        </Field>
        <label className="check">
          <input
            type="checkbox"
            name="checks.filesystems"
            checked={form.filesystems}
            onChange={(e) => onChange({ filesystems: e.target.checked })}
          />{' '}
          Check every filesystem of the point (journal replayed, then a read-only check, without booting)
        </label>
        <Field
          name="checks.script.name"
          label={
            <>
              Application check <span className="hint">an admin's script, run in the test network</span>
            </>
          }
          errors={errors}
          idPrefix={idPrefix}
        >
          {(props) => (
            <select {...props} value={form.script} onChange={(e) => onChange({ script: e.target.value })}>
              <option value="">none</option>
              {usable.map((s) => (
                <option key={s.name}>{s.name}</option>
              ))}
              {form.script && !usable.some((s) => s.name === form.script) && (
                <option value={form.script}>{form.script} (not usable now)</option>
              )}
            </select>
          )}
        </Field>
        {form.script && (
          <Field
            name="checks.script.timeoutSeconds"
            label="Application check: time limit (seconds)"
            errors={errors}
            idPrefix={idPrefix}
          >
            {(props) => (
              <input
                {...props}
                inputMode="numeric"
                value={form.scriptTimeoutSeconds}
                onChange={(e) => onChange({ scriptTimeoutSeconds: e.target.value })}
              />
            )}
          </Field>
        )}
      </fieldset>
    </>
  );
}
