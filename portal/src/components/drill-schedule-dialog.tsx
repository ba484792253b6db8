import { type FormEvent, useState } from 'react';
import type { DrillConflictAction, DrillSchedule } from '../../../src/domain/drill.ts';
import type { Machine, RecoveryPlan } from '../../../src/domain/model.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';
import { Dialog } from './dialog.tsx';
import { DialogActions } from './dialog-actions.tsx';
import {
  DEFAULT_DRILL_SETTINGS,
  DrillSettingsFields,
  type DrillSettingsForm,
  drillSettingsBody,
  drillSettingsForm,
  numberOr,
} from './drill-settings-fields.tsx';
import { Field, problemsByField } from './field.tsx';

export type PresentedDrillSchedule = DrillSchedule & { targetName: string | null };

interface ScheduleForm {
  name: string;
  targetKind: 'machine' | 'plan';
  target: string;
  cadenceKind: 'daily' | 'every';
  at: string;
  timeZone: string;
  hours: string;
  maxConcurrentPerHost: string;
  onConflict: DrillConflictAction;
  enabled: boolean;
  settings: DrillSettingsForm;
}

const browserZone = (): string => Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

function formOf(schedule: PresentedDrillSchedule | null): ScheduleForm {
  if (!schedule) {
    return {
      name: '',
      targetKind: 'machine',
      target: '',
      cadenceKind: 'daily',
      at: '02:00',
      timeZone: browserZone(),
      hours: '6',
      maxConcurrentPerHost: '2',
      onConflict: 'wait',
      enabled: true,
      settings: DEFAULT_DRILL_SETTINGS,
    };
  }
  const c = schedule.cadence;
  return {
    name: schedule.name,
    targetKind: schedule.target.kind,
    target:
      schedule.targetName ??
      (schedule.target.kind === 'plan' ? schedule.target.planId : schedule.target.machineId),
    cadenceKind: c.kind,
    at: c.kind === 'daily' ? c.at : '02:00',
    timeZone: c.kind === 'daily' ? c.timeZone : browserZone(),
    hours: c.kind === 'every' ? String(c.hours) : '6',
    maxConcurrentPerHost: String(schedule.maxConcurrentPerHost),
    onConflict: schedule.onConflict,
    enabled: schedule.enabled,
    settings: drillSettingsForm(schedule),
  };
}

function bodyOf(form: ScheduleForm) {
  return {
    name: form.name.trim(),
    target:
      form.targetKind === 'machine'
        ? { kind: 'machine', machine: form.target }
        : { kind: 'plan', plan: form.target },
    cadence:
      form.cadenceKind === 'daily'
        ? { kind: 'daily', at: form.at.trim(), timeZone: form.timeZone.trim() }
        : { kind: 'every', hours: numberOr(form.hours) },
    ...drillSettingsBody(form.settings),
    maxConcurrentPerHost: numberOr(form.maxConcurrentPerHost),
    onConflict: form.onConflict,
    enabled: form.enabled,
  };
}

/** Create a drill schedule, or edit one (`schedule`); the API's refusals show at their fields. */
export function DrillScheduleDialog({
  schedule,
  onSaved,
  onClose,
}: {
  schedule: PresentedDrillSchedule | null;
  onSaved: () => void;
  onClose: () => void;
}) {
  const { api } = useSession();
  const machines = useResource<{ machines: Pick<Machine, 'id' | 'name'>[] }>('/machines');
  const plans = useResource<{ plans: Pick<RecoveryPlan, 'id' | 'name'>[] }>('/plans');
  const [form, setForm] = useState<ScheduleForm>(() => formOf(schedule));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const set = (patch: Partial<ScheduleForm>) => setForm((f) => ({ ...f, ...patch }));
  const errors = problemsByField(error);
  const targets = form.targetKind === 'machine' ? (machines.data?.machines ?? []) : (plans.data?.plans ?? []);
  const idPrefix = 'drill-schedule';

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      if (schedule) {
        await api.request('PUT', `/drill-schedules/${encodeURIComponent(schedule.id)}`, bodyOf(form));
      } else {
        await api.post('/drill-schedules', bodyOf(form));
      }
      onSaved();
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  };

  return (
    <Dialog
      title={schedule ? `Edit drill schedule ${schedule.name}` : 'New drill schedule'}
      onClose={onClose}
    >
      <form onSubmit={submit} className="operation-form" data-testid="drill-schedule-form">
        <Field name="name" label="Name" errors={errors} idPrefix={idPrefix}>
          {(props) => <input {...props} value={form.name} onChange={(e) => set({ name: e.target.value })} />}
        </Field>
        <fieldset className="radios inline">
          <legend>Drills</legend>
          {(['machine', 'plan'] as const).map((kind) => (
            <label key={kind}>
              <input
                type="radio"
                name="targetKind"
                checked={form.targetKind === kind}
                onChange={() => set({ targetKind: kind, target: '' })}
              />{' '}
              {kind === 'machine' ? 'a machine' : 'a recovery plan'}
            </label>
          ))}
        </fieldset>
        <Field
          name={`target.${form.targetKind}`}
          label={form.targetKind === 'machine' ? 'Machine' : 'Recovery plan'}
          errors={errors}
          idPrefix={idPrefix}
        >
          {(props) => (
            <select {...props} value={form.target} onChange={(e) => set({ target: e.target.value })}>
              <option value="">choose…</option>
              {targets.map((t) => (
                <option key={t.id} value={t.name}>
                  {t.name}
                </option>
              ))}
            </select>
          )}
        </Field>
        <fieldset className="radios inline">
          <legend>How often</legend>
          <label>
            <input
              type="radio"
              name="cadenceKind"
              checked={form.cadenceKind === 'daily'}
              onChange={() => set({ cadenceKind: 'daily' })}
            />{' '}
            daily at a time
          </label>
          <label>
            <input
              type="radio"
              name="cadenceKind"
              checked={form.cadenceKind === 'every'}
              onChange={() => set({ cadenceKind: 'every' })}
            />{' '}
            every N hours
          </label>
        </fieldset>
        {form.cadenceKind === 'daily' ? (
          <div className="row">
            <Field name="cadence.at" label="At (HH:MM, 24-hour)" errors={errors} idPrefix={idPrefix}>
              {(props) => <input {...props} value={form.at} onChange={(e) => set({ at: e.target.value })} />}
            </Field>
            <Field name="cadence.timeZone" label="Time zone" errors={errors} idPrefix={idPrefix}>
              {(props) => (
                <input {...props} value={form.timeZone} onChange={(e) => set({ timeZone: e.target.value })} />
              )}
            </Field>
          </div>
        ) : (
          <Field name="cadence.hours" label="Every (hours)" errors={errors} idPrefix={idPrefix}>
            {(props) => (
              <input
                {...props}
                inputMode="numeric"
                value={form.hours}
                onChange={(e) => set({ hours: e.target.value })}
              />
            )}
          </Field>
        )}
        <DrillSettingsFields
          form={form.settings}
          onChange={(patch) => setForm((f) => ({ ...f, settings: { ...f.settings, ...patch } }))}
          errors={errors}
          idPrefix={idPrefix}
        />
        <Field
          name="maxConcurrentPerHost"
          label="At most this many drills at once per recovery host"
          errors={errors}
          idPrefix={idPrefix}
        >
          {(props) => (
            <input
              {...props}
              inputMode="numeric"
              value={form.maxConcurrentPerHost}
              onChange={(e) => set({ maxConcurrentPerHost: e.target.value })}
            />
          )}
        </Field>
        <Field
          name="onConflict"
          label="When the machine is in a test failover an operator started"
          errors={errors}
          idPrefix={idPrefix}
        >
          {(props) => (
            <select
              {...props}
              value={form.onConflict}
              onChange={(e) => set({ onConflict: e.target.value as DrillConflictAction })}
            >
              <option value="wait">wait for it to end</option>
              <option value="skip">skip this run</option>
            </select>
          )}
        </Field>
        <label className="check">
          <input
            type="checkbox"
            name="enabled"
            checked={form.enabled}
            onChange={(e) => set({ enabled: e.target.checked })}
          />{' '}
          Enabled
        </label>
        <DialogActions error={error} onCancel={onClose} disabled={busy}>
          {busy ? 'Saving…' : schedule ? 'Save schedule' : 'Create schedule'}
        </DialogActions>
      </form>
    </Dialog>
  );
}
