import { type FormEvent, useState } from 'react';
import type { Host, Machine, RegisteredScript, Site } from '../../../src/domain/model.ts';
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
import { type PickableMachine, PlanMachinePicker } from './plan-machine-picker.tsx';

type Side = 'before' | 'after';

/**
 * Groups and actions carry a key of the form's own, so a moved one keeps its
 * DOM (and the focus of the button that moved it).
 */
interface DraftAction extends PlanActionDocument {
  key: number;
}
interface DraftGroup extends Omit<PlanGroupDocument, 'before' | 'after'> {
  key: number;
  before: DraftAction[];
  after: DraftAction[];
}
interface Draft {
  name: string;
  description: string;
  groups: DraftGroup[];
}

let nextKey = 0;
const keyed = <T,>(item: T): T & { key: number } => ({ ...item, key: nextKey++ });

function toDraft(doc: PlanDocument): Draft {
  return {
    name: doc.name,
    description: doc.description ?? '',
    groups: doc.groups.map((g) =>
      keyed({
        name: g.name,
        machines: g.machines,
        before: (g.before ?? []).map(keyed),
        after: (g.after ?? []).map(keyed),
      }),
    ),
  };
}

const withoutKey = ({ key: _, ...action }: DraftAction): PlanActionDocument => action;

function toDocument(draft: Draft): PlanDocument {
  return {
    name: draft.name,
    description: draft.description,
    groups: draft.groups.map((g) => ({
      name: g.name,
      machines: g.machines,
      before: g.before.map(withoutKey),
      after: g.after.map(withoutKey),
    })),
  };
}

/** The list with its item at `from` moved one place up (-1) or down (1). */
function moved<T>(list: T[], from: number, by: -1 | 1): T[] {
  const copy = [...list];
  const [item] = copy.splice(from, 1);
  copy.splice(from + by, 0, item!);
  return copy;
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
  const machines = useResource<{ machines: Machine[] }>('/machines');
  const hosts = useResource<{ hosts: Host[] }>('/hosts');
  const sites = useResource<{ sites: Site[] }>('/sites');
  const siteOfHost = new Map(
    (hosts.data?.hosts ?? []).map((h) => [
      h.id,
      (sites.data?.sites ?? []).find((s) => s.id === h.siteId)?.name ?? null,
    ]),
  );
  const pickable: PickableMachine[] = (machines.data?.machines ?? [])
    .map((m) => ({ name: m.name, state: m.state, site: siteOfHost.get(m.activeHostId) ?? null }))
    .sort((a, b) => a.name.localeCompare(b.name));

  const errors = problemsByField(error);
  // A problem with one listed machine belongs to the group's machines line.
  for (const [key, messages] of [...errors]) {
    const m = key.match(/^(groups\.\d+\.machines)\.\d+$/);
    if (m) errors.set(m[1]!, [...(errors.get(m[1]!) ?? []), ...messages]);
  }

  const setGroup = (g: number, patch: Partial<DraftGroup>) =>
    setDraft((d) => ({ ...d, groups: d.groups.map((x, i) => (i === g ? { ...x, ...patch } : x)) }));
  // Moves at an end do nothing: the buttons there are aria-disabled, not disabled, so the focus of the
  // button that just moved its group or action to the end stays on it.
  const moveGroup = (g: number, by: -1 | 1) =>
    setDraft((d) => (g + by < 0 || g + by >= d.groups.length ? d : { ...d, groups: moved(d.groups, g, by) }));
  const setAction = (g: number, side: Side, a: number, patch: Partial<PlanActionDocument>) =>
    setGroup(g, { [side]: draft.groups[g]![side].map((x, i) => (i === a ? { ...x, ...patch } : x)) });
  const moveAction = (g: number, side: Side, a: number, by: -1 | 1) => {
    const list = draft.groups[g]![side];
    if (a + by >= 0 && a + by < list.length) setGroup(g, { [side]: moved(list, a, by) });
  };
  /** For group g: each machine another group lists, with that group's name. */
  const elsewhere = (g: number) =>
    new Map(
      draft.groups.flatMap((other, i) =>
        i === g ? [] : other.machines.map((m) => [m, other.name || `${i + 1}`] as const),
      ),
    );

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
      // A refusal may name a machine deleted meanwhile: the picker marks it once it knows.
      machines.reload();
    }
  };

  const usable = (scripts.data?.scripts ?? []).filter((s) => s.problem === null);
  return (
    <form onSubmit={submit} className="settings-form plan-editor" noValidate data-testid="plan-editor">
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
          <fieldset key={group.key} className="plan-group" data-group-index={g}>
            <legend>
              Group {g + 1}
              {group.name.trim() && ` · ${group.name.trim()}`}
            </legend>
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
                    Machines <span className="hint">they start together</span>
                  </>
                }
                errors={errors}
                idPrefix="plan"
              >
                {(props) => (
                  <PlanMachinePicker
                    field={props}
                    group={`group ${g + 1}`}
                    chosen={group.machines}
                    machines={pickable}
                    elsewhere={elsewhere(g)}
                    onChange={(names) => setGroup(g, { machines: names })}
                  />
                )}
              </Field>
            </div>
            {(['before', 'after'] as const).map((side) => (
              <div key={side} className="plan-actions">
                <h4>Actions {side} its machines</h4>
                {group[side].map((action, a) => {
                  const at = `groups.${g}.${side}.${a}`;
                  const which = `action ${a + 1} ${side} group ${g + 1}`;
                  return (
                    <div key={action.key} className="row plan-action" data-action-index={a}>
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
                      <div className="field action-buttons">
                        <button
                          type="button"
                          aria-label={`Move ${which} up`}
                          title="Move up"
                          aria-disabled={a === 0}
                          onClick={() => moveAction(g, side, a, -1)}
                        >
                          <span aria-hidden="true">↑</span>
                        </button>
                        <button
                          type="button"
                          aria-label={`Move ${which} down`}
                          title="Move down"
                          aria-disabled={a === group[side].length - 1}
                          onClick={() => moveAction(g, side, a, 1)}
                        >
                          <span aria-hidden="true">↓</span>
                        </button>
                        <button
                          type="button"
                          aria-label={`Remove ${which}`}
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
                    setGroup(g, { [side]: [...group[side], keyed({ kind: 'manual', name: '', text: '' })] })
                  }
                >
                  Add action {side}
                </button>
              </div>
            ))}
            <div className="actions">
              <button
                type="button"
                aria-label={`Move group ${g + 1} up`}
                aria-disabled={g === 0}
                onClick={() => moveGroup(g, -1)}
              >
                Move up
              </button>
              <button
                type="button"
                aria-label={`Move group ${g + 1} down`}
                aria-disabled={g === draft.groups.length - 1}
                onClick={() => moveGroup(g, 1)}
              >
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
                keyed({ name: `group-${draft.groups.length + 1}`, machines: [], before: [], after: [] }),
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
