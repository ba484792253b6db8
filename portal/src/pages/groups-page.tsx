import { type FormEvent, useState } from 'react';
import type { Host, Machine } from '../../../src/domain/model.ts';
import type { ConsistencyGroup } from '../../../src/vault/groups/group-service.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { Dialog } from '../components/dialog.tsx';
import { DialogActions } from '../components/dialog-actions.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { Field, problemsByField } from '../components/field.tsx';
import { Link, navigate } from '../router.tsx';
import { canOperate, useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';

/** Machines that may join a group: protected (a recovery host) and in no group yet. */
export function groupCandidates(machines: Machine[]): Machine[] {
  return machines.filter((m) => m.recoveryHostId !== null && m.groupId === null);
}

export function GroupsPage() {
  const { role } = useSession();
  const groups = useResource<{ groups: ConsistencyGroup[] }>('/groups', { refreshMs: 10_000 });
  const hosts = useResource<{ hosts: Host[] }>('/hosts');
  const [creating, setCreating] = useState(false);
  const hostName = new Map((hosts.data?.hosts ?? []).map((h) => [h.id, h.name]));
  const list = groups.data?.groups ?? [];
  return (
    <section>
      <h1>Consistency groups</h1>
      <p className="muted">
        Machines of a group share multi-machine recovery points: they fail over to one moment together.
      </p>
      {canOperate(role) && (
        <div className="toolbar">
          <button type="button" className="primary" onClick={() => setCreating(true)}>
            New group
          </button>
        </div>
      )}
      <ErrorMessage error={groups.error} />
      {groups.data && list.length === 0 && <p className="muted">No consistency groups yet.</p>}
      {list.length > 0 && (
        <div className="table-wrap">
          <table className="stack" data-testid="groups-table">
            <thead>
              <tr>
                <th scope="col">Group</th>
                <th scope="col">Members</th>
                <th scope="col">Recovery host</th>
                <th scope="col">OS family</th>
              </tr>
            </thead>
            <tbody>
              {list.map((g) => (
                <tr key={g.name} data-group={g.name}>
                  <th scope="row">
                    <Link to={`/groups/${encodeURIComponent(g.name)}`}>{g.name}</Link>
                  </th>
                  <td data-label="Members" className="wrap">
                    {g.machineNames.join(', ')}
                  </td>
                  <td data-label="Recovery host">
                    {g.recoveryHostId ? (
                      <Link to={`/hosts/${encodeURIComponent(g.recoveryHostId)}`}>
                        {hostName.get(g.recoveryHostId) ?? 'host'}
                      </Link>
                    ) : (
                      '—'
                    )}
                  </td>
                  <td data-label="OS family">{g.osFamily ?? '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {creating && <CreateGroupDialog onClose={() => setCreating(false)} />}
    </section>
  );
}

function CreateGroupDialog({ onClose }: { onClose: () => void }) {
  const { api } = useSession();
  const machines = useResource<{ machines: Machine[] }>('/machines');
  const [name, setName] = useState('');
  const [picked, setPicked] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const errors = problemsByField(error);
  const candidates = groupCandidates(machines.data?.machines ?? []);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const group = await api.post<ConsistencyGroup>('/groups', { name, machineIds: picked });
      onClose();
      navigate(`/groups/${encodeURIComponent(group.name)}`);
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  };
  return (
    <Dialog title="New consistency group" onClose={onClose}>
      <form onSubmit={submit} noValidate>
        <Field name="name" label="Group name" errors={errors} idPrefix="group">
          {(props) => <input {...props} value={name} onChange={(e) => setName(e.target.value)} />}
        </Field>
        <fieldset className="radios" aria-invalid={errors.has('machineIds')}>
          <legend>
            Machines{' '}
            <span className="hint">protected, in no other group; same recovery host and OS family</span>
          </legend>
          {machines.data && candidates.length === 0 && (
            <p className="muted">No protected machine outside a group: protect one first.</p>
          )}
          {candidates.map((m) => (
            <label key={m.id}>
              <input
                type="checkbox"
                checked={picked.includes(m.id)}
                onChange={(e) =>
                  setPicked(e.target.checked ? [...picked, m.id] : picked.filter((id) => id !== m.id))
                }
              />{' '}
              {m.name}
            </label>
          ))}
          {errors.has('machineIds') && (
            <p className="field-error" data-field="machineIds">
              {errors.get('machineIds')!.join('; ')}
            </p>
          )}
        </fieldset>
        <DialogActions error={error} onCancel={onClose} disabled={busy}>
          {busy ? 'Creating…' : 'Create group'}
        </DialogActions>
      </form>
    </Dialog>
  );
}
