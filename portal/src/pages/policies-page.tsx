import { type FormEvent, useState } from 'react';
import type { Machine, Policy } from '../../../src/domain/model.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { ConfirmDialog } from '../components/confirm-dialog.tsx';
import { Dialog } from '../components/dialog.tsx';
import { DialogActions } from '../components/dialog-actions.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { Field, problemsByField } from '../components/field.tsx';
import { formatDuration } from '../format-time.ts';
import { useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';

type PolicyFields = Pick<
  Policy,
  'name' | 'rpoThresholdSeconds' | 'retentionSeconds' | 'appConsistentFrequencySeconds'
>;

const NEW_POLICY: PolicyFields = {
  name: '',
  rpoThresholdSeconds: 900,
  retentionSeconds: 86_400,
  appConsistentFrequencySeconds: 3600,
};

/** Replication policies; only admins change them (the vault's rule), built-in ones never. */
export function PoliciesPage() {
  const { api, role } = useSession();
  const policies = useResource<{ policies: Policy[] }>('/policies');
  const machines = useResource<{ machines: Pick<Machine, 'id' | 'policyId'>[] }>('/machines');
  const [editing, setEditing] = useState<Policy | 'new' | null>(null);
  const [removing, setRemoving] = useState<Policy | null>(null);
  const admin = role === 'admin';
  const users = (p: Policy) => (machines.data?.machines ?? []).filter((m) => m.policyId === p.id).length;
  const list = policies.data?.policies ?? [];
  return (
    <section>
      <h1>Policies</h1>
      <p className="muted">
        How often a machine is alerted for falling behind (RPO threshold), how long its points are kept, and
        how often app-consistent points are taken.
      </p>
      {admin && (
        <div className="toolbar">
          <button type="button" className="primary" onClick={() => setEditing('new')}>
            New policy
          </button>
        </div>
      )}
      <ErrorMessage error={policies.error} />
      {list.length > 0 && (
        <div className="table-wrap">
          <table className="stack" data-testid="policies-table">
            <thead>
              <tr>
                <th scope="col">Policy</th>
                <th scope="col">RPO threshold</th>
                <th scope="col">Retention</th>
                <th scope="col">App-consistent every</th>
                <th scope="col">Machines</th>
                {admin && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {list.map((p) => (
                <tr key={p.id} data-policy={p.name}>
                  <th scope="row">
                    {p.name} {p.builtIn && <span className="badge">built in</span>}
                  </th>
                  <td data-label="RPO threshold">{formatDuration(p.rpoThresholdSeconds)}</td>
                  <td data-label="Retention">{formatDuration(p.retentionSeconds)}</td>
                  <td data-label="App-consistent every">
                    {p.appConsistentFrequencySeconds === 0
                      ? 'never'
                      : formatDuration(p.appConsistentFrequencySeconds)}
                  </td>
                  <td data-label="Machines">{machines.data ? users(p) : '…'}</td>
                  {admin && (
                    <td data-label="Actions">
                      {p.builtIn ? (
                        <span className="muted small">read-only</span>
                      ) : (
                        <span className="state-actions">
                          <button type="button" onClick={() => setEditing(p)}>
                            Edit {p.name}…
                          </button>
                          <button type="button" onClick={() => setRemoving(p)}>
                            Delete {p.name}
                          </button>
                        </span>
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {removing && (
        <ConfirmDialog
          title={`Delete policy ${removing.name}`}
          action="Delete policy"
          onClose={() => setRemoving(null)}
          onConfirm={async () => {
            await api.request('DELETE', `/policies/${encodeURIComponent(removing.id)}`);
            setRemoving(null);
            policies.reload();
          }}
        >
          <p>
            Delete policy <strong>{removing.name}</strong>? The vault refuses while a machine uses it.
          </p>
        </ConfirmDialog>
      )}
      {editing && (
        <PolicyDialog
          policy={editing === 'new' ? null : editing}
          onClose={() => setEditing(null)}
          onSaved={() => {
            setEditing(null);
            policies.reload();
          }}
        />
      )}
    </section>
  );
}

const SECONDS_FIELDS = [
  {
    name: 'rpoThresholdSeconds',
    label: 'RPO threshold (seconds)',
    hint: 'alert when the newest point is older',
  },
  { name: 'retentionSeconds', label: 'Retention (seconds)', hint: 'how far back points are kept' },
  {
    name: 'appConsistentFrequencySeconds',
    label: 'App-consistent frequency (seconds)',
    hint: '0: never',
  },
] as const;

function PolicyDialog({
  policy,
  onClose,
  onSaved,
}: {
  policy: Policy | null;
  onClose: () => void;
  onSaved: () => void;
}) {
  const { api } = useSession();
  const [draft, setDraft] = useState<PolicyFields>(() => (policy ? { ...policy } : NEW_POLICY));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const errors = problemsByField(error);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    const body = {
      name: draft.name,
      rpoThresholdSeconds: draft.rpoThresholdSeconds,
      retentionSeconds: draft.retentionSeconds,
      appConsistentFrequencySeconds: draft.appConsistentFrequencySeconds,
    };
    try {
      if (policy) await api.patch(`/policies/${encodeURIComponent(policy.id)}`, body);
      else await api.post('/policies', body);
      onSaved();
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  };
  return (
    <Dialog title={policy ? `Edit policy ${policy.name}` : 'New policy'} onClose={onClose}>
      <form onSubmit={submit} noValidate>
        <Field name="name" label="Name" errors={errors} idPrefix="policy">
          {(props) => (
            <input
              {...props}
              value={draft.name}
              onChange={(e) => setDraft({ ...draft, name: e.target.value })}
            />
          )}
        </Field>
        {SECONDS_FIELDS.map((f) => (
          <Field
            key={f.name}
            name={f.name}
            label={
              <>
                {f.label}{' '}
                <span className="hint">
                  {f.hint}
                  {Number.isFinite(draft[f.name]) &&
                    draft[f.name] > 0 &&
                    ` · ${formatDuration(draft[f.name])}`}
                </span>
              </>
            }
            errors={errors}
            idPrefix="policy"
          >
            {(props) => (
              <input
                {...props}
                type="number"
                min={0}
                value={Number.isNaN(draft[f.name]) ? '' : draft[f.name]}
                onChange={(e) => setDraft({ ...draft, [f.name]: e.target.valueAsNumber })}
              />
            )}
          </Field>
        ))}
        <DialogActions error={error} onCancel={onClose} disabled={busy}>
          {busy ? 'Saving…' : policy ? 'Save policy' : 'Create policy'}
        </DialogActions>
      </form>
    </Dialog>
  );
}
