import { type FormEvent, useState } from 'react';
import type { RegisteredScript } from '../../../src/domain/model.ts';
import type {
  PlanActionDocument,
  PlanDocument,
  PlanGroupDocument,
} from '../../../src/domain/recovery-plan-validation.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';
import { ErrorMessage } from './error-message.tsx';
import { Field, problemsByField } from './field.tsx';

type Side = 'before' | 'after';

/** A group as the form edits it: machines as one comma-separated line. */
interface DraftGroup extends Omit<PlanGroupDocument, 'machines'> {
  machines: string;
  before: PlanActionDocument[];
  after: PlanActionDocument[];
}
interface Draft {
  name: string;
  description: string;
  groups: DraftGroup[];
}

function toDraft(doc: PlanDocument): Draft {
  return {
    name: doc.name,
    description: doc.description ?? '',
    groups: doc.groups.map((g) => ({
      name: g.name,
      machines: g.machines.join(', '),
      before: g.before ?? [],
      after: g.after ?? [],
    })),
  };
}

function toDocument(draft: Draft): PlanDocument {
  return {
    name: draft.name,
    description: draft.description,
    groups: draft.groups.map((g) => ({
      name: g.name,
      machines: g.machines
        .split(',')
        .map((m) => m.trim())
        .filter(Boolean),
      before: g.before,
      after: g.after,
    })),
  };
}

export const EMPTY_PLAN: PlanDocument = {
  name: '',
  description: '',
  groups: [{ name: 'group-1', machines: [] }],
};

/**
 * Creates or replaces a plan (PUT replaces it whole, as the API's document).
 * The vault validates; each of its problems shows at its field
 * ('groups[0].machines[1]' at that group's machines).
 */
export function PlanEditor({
  initial,
  planId,
  onSaved,
  onCancel,
}: {
  initial: PlanDocument;
  /** null: a new plan. */
  planId: string | null;
  onSaved: (plan: { id: string }) => void;
  onCancel: () => void;
}) {
  const { api } = useSession();
  const [draft, setDraft] = useState<Draft>(() => toDraft(initial));
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState<ApiError>();
  const scripts = useResource<{ scripts: RegisteredScript[] }>('/scripts');
  const machines = useResource<{ machines: { id: string; name: string }[] }>('/machines');

  const errors = problemsByField(error);
  // A problem with one listed machine belongs to the group's machines line.
  for (const [key, messages] of [...errors]) {
    const m = key.match(/^(groups\.\d+\.machines)\.\d+$/);
    if (m) errors.set(m[1]!, [...(errors.get(m[1]!) ?? []), ...messages]);
  }

  const setGroup = (g: number, patch: Partial<DraftGroup>) =>
    setDraft((d) => ({ ...d, groups: d.groups.map((x, i) => (i === g ? { ...x, ...patch } : x)) }));
  const moveGroup = (g: number, by: -1 | 1) =>
    setDraft((d) => {
      const groups = [...d.groups];
      const [moved] = groups.splice(g, 1);
      groups.splice(g + by, 0, moved!);
      return { ...d, groups };
    });
  const setAction = (g: number, side: Side, a: number, patch: Partial<PlanActionDocument>) =>
    setGroup(g, { [side]: draft.groups[g]![side].map((x, i) => (i === a ? { ...x, ...patch } : x)) });

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setSaving(true);
    setError(undefined);
    try {
      const doc = toDocument(draft);
      const saved = planId
        ? await api.request<{ id: string }>('PUT', `/plans/${encodeURIComponent(planId)}`, doc)
        : await api.post<{ id: string }>('/plans', doc);
      onSaved(saved);
    } catch (e) {
      setError(asApiError(e));
      setSaving(false);
    }
  };

  const usable = (scripts.data?.scripts ?? []).filter((s) => s.problem === null);
  return (
    <form onSubmit={submit} className="settings-form plan-editor" noValidate data-testid="plan-editor">
      <datalist id="plan-machine-names">
        {(machines.data?.machines ?? []).map((m) => (
          <option key={m.id} value={m.name} />
        ))}
      </datalist>
      <fieldset disabled={saving}>
        <legend className="sr-only">Recovery plan</legend>
        <div className="row">
          <Field name="name" label="Plan name" errors={errors} idPrefix="plan">
            {(props) => (
              <input
                {...props}
                value={draft.name}
                onChange={(e) => setDraft({ ...draft, name: e.target.value })}
              />
            )}
          </Field>
        </div>
        <Field name="description" label="Description" errors={errors} idPrefix="plan">
          {(props) => (
            <textarea
              {...props}
              rows={2}
              value={draft.description}
              onChange={(e) => setDraft({ ...draft, description: e.target.value })}
            />
          )}
        </Field>
        {draft.groups.map((group, g) => (
          // biome-ignore lint/suspicious/noArrayIndexKey: groups are identified by their place (the API's groups[g])
          <fieldset key={g} className="plan-group" data-group-index={g}>
            <legend>Group {g + 1}</legend>
            <div className="row">
              <Field name={`groups.${g}.name`} label="Group name" errors={errors} idPrefix="plan">
                {(props) => (
                  <input
                    {...props}
                    value={group.name}
                    onChange={(e) => setGroup(g, { name: e.target.value })}
                  />
                )}
              </Field>
              <Field
                name={`groups.${g}.machines`}
                label={
                  <>
                    Machines <span className="hint">names, separated by commas; they start together</span>
                  </>
                }
                errors={errors}
                idPrefix="plan"
              >
                {(props) => (
                  <input
                    {...props}
                    list="plan-machine-names"
                    value={group.machines}
                    onChange={(e) => setGroup(g, { machines: e.target.value })}
                  />
                )}
              </Field>
            </div>
            {(['before', 'after'] as const).map((side) => (
              <div key={side} className="plan-actions">
                <h4>Actions {side} its machines</h4>
                {group[side].map((action, a) => {
                  const at = `groups.${g}.${side}.${a}`;
                  return (
                    // biome-ignore lint/suspicious/noArrayIndexKey: actions run in their listed order
                    <div key={a} className="row plan-action">
                      <Field name={`${at}.kind`} label="Kind" errors={errors} idPrefix="plan">
                        {(props) => (
                          <select
                            {...props}
                            value={action.kind}
                            onChange={(e) =>
                              setAction(g, side, a, { kind: e.target.value as PlanActionDocument['kind'] })
                            }
                          >
                            <option value="manual">manual (wait for Resume)</option>
                            <option value="script">script</option>
                          </select>
                        )}
                      </Field>
                      <Field name={`${at}.name`} label="Action name" errors={errors} idPrefix="plan">
                        {(props) => (
                          <input
                            {...props}
                            value={action.name}
                            onChange={(e) => setAction(g, side, a, { name: e.target.value })}
                          />
                        )}
                      </Field>
                      {action.kind === 'manual' ? (
                        <Field name={`${at}.text`} label="Instructions" errors={errors} idPrefix="plan">
                          {(props) => (
                            <input
                              {...props}
                              value={action.text ?? ''}
                              onChange={(e) => setAction(g, side, a, { text: e.target.value })}
                            />
                          )}
                        </Field>
                      ) : (
                        <>
                          <Field name={`${at}.script`} label="Script" errors={errors} idPrefix="plan">
                            {(props) => (
                              <select
                                {...props}
                                value={action.script ?? ''}
                                onChange={(e) => setAction(g, side, a, { script: e.target.value })}
                              >
                                <option value="">
                                  {usable.length === 0 ? 'no script registered' : 'choose…'}
                                </option>
                                {usable.map((s) => (
                                  <option key={s.name} value={s.name}>
                                    {s.name}
                                  </option>
                                ))}
                              </select>
                            )}
                          </Field>
                          <Field
                            name={`${at}.timeoutSeconds`}
                            label="Timeout (s)"
                            errors={errors}
                            idPrefix="plan"
                          >
                            {(props) => (
                              <input
                                {...props}
                                type="number"
                                min={1}
                                value={action.timeoutSeconds ?? ''}
                                onChange={(e) =>
                                  setAction(g, side, a, {
                                    timeoutSeconds: e.target.value === '' ? null : e.target.valueAsNumber,
                                  })
                                }
                              />
                            )}
                          </Field>
                        </>
                      )}
                      <div className="field">
                        <button
                          type="button"
                          aria-label={`Remove action ${a + 1} ${side} group ${g + 1}`}
                          onClick={() => setGroup(g, { [side]: group[side].filter((_, i) => i !== a) })}
                        >
                          Remove
                        </button>
                      </div>
                    </div>
                  );
                })}
                <button
                  type="button"
                  onClick={() =>
                    setGroup(g, { [side]: [...group[side], { kind: 'manual', name: '', text: '' }] })
                  }
                >
                  Add action {side}
                </button>
              </div>
            ))}
            <div className="actions">
              <button type="button" disabled={g === 0} onClick={() => moveGroup(g, -1)}>
                Move up
              </button>
              <button type="button" disabled={g === draft.groups.length - 1} onClick={() => moveGroup(g, 1)}>
                Move down
              </button>
              <button
                type="button"
                onClick={() => setDraft({ ...draft, groups: draft.groups.filter((_, i) => i !== g) })}
              >
                Remove group {g + 1}
              </button>
            </div>
          </fieldset>
        ))}
        <button
          type="button"
          onClick={() =>
            setDraft({
              ...draft,
              groups: [
                ...draft.groups,
                { name: `group-${draft.groups.length + 1}`, machines: '', before: [], after: [] },
              ],
            })
          }
        >
          Add group
        </button>
        {errors.has('groups') && (
          <p className="field-error" data-field="groups">
            {errors.get('groups')!.join('; ')}
          </p>
        )}
        <ErrorMessage error={error} />
        <div className="form-actions">
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
          <button type="submit" className="primary">
            {saving ? 'Saving…' : planId ? 'Save plan' : 'Create plan'}
          </button>
        </div>
      </fieldset>
    </form>
  );
}
