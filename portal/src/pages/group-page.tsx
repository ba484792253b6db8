import { useState } from 'react';
import type { Host, Machine, RecoveryPoint } from '../../../src/domain/model.ts';
import type { ConsistencyGroup } from '../../../src/vault/groups/group-service.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { Ago } from '../components/ago.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { formatTime } from '../format-time.ts';
import { newestFirst } from '../operations.ts';
import { Link, navigate } from '../router.tsx';
import { canOperate, useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';
import { groupCandidates } from './groups-page.tsx';

export function GroupPage({ name }: { name: string }) {
  const { api, role } = useSession();
  const path = `/groups/${encodeURIComponent(name)}`;
  const group = useResource<ConsistencyGroup>(path, { refreshMs: 10_000 });
  const hosts = useResource<{ hosts: Host[] }>('/hosts');
  const machines = useResource<{ machines: Machine[] }>(canOperate(role) ? '/machines' : null);
  const first = group.data?.machineIds[0];
  const points = useResource<{ recoveryPoints: RecoveryPoint[] }>(
    first ? `/machines/${encodeURIComponent(first)}/recovery-points` : null,
    { refreshMs: 10_000 },
  );
  const [adding, setAdding] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const [cut, setCut] = useState<string | null>(null);

  const act = async (action: () => Promise<void>) => {
    setBusy(true);
    setError(undefined);
    try {
      await action();
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };

  if (!group.data) {
    return (
      <section>
        <p className="crumbs">
          <Link to="/groups">Consistency groups</Link>
        </p>
        {group.error ? <ErrorMessage error={group.error} /> : <p className="loading-page">Loading…</p>}
      </section>
    );
  }
  const g = group.data;
  const operator = canOperate(role);
  const host = (hosts.data?.hosts ?? []).find((h) => h.id === g.recoveryHostId);
  const last = (points.data?.recoveryPoints ?? [])
    .filter((p) => p.groupPointId !== null)
    .sort(newestFirst)[0];
  const candidates = groupCandidates(machines.data?.machines ?? []);
  return (
    <section>
      <p className="crumbs">
        <Link to="/groups">Consistency groups</Link>
      </p>
      <h1>Group {g.name}</h1>
      <dl className="facts">
        <dt>Recovery host</dt>
        <dd>
          {g.recoveryHostId ? (
            <Link to={`/hosts/${encodeURIComponent(g.recoveryHostId)}`}>{host?.name ?? 'host'}</Link>
          ) : (
            '—'
          )}
        </dd>
        <dt>OS family</dt>
        <dd>{g.osFamily ?? '—'}</dd>
        <dt>Last group point</dt>
        <dd data-testid="last-group-point">
          {last ? (
            <span title={formatTime(last.time)}>
              <Ago iso={last.time} /> ({last.type})
            </span>
          ) : points.data ? (
            <span className="muted">none yet</span>
          ) : (
            '…'
          )}
        </dd>
      </dl>
      <ErrorMessage error={error} />
      {cut && <p className="ok">Group point taken.</p>}
      {operator && (
        <div className="toolbar">
          <button
            type="button"
            disabled={busy}
            onClick={() =>
              act(async () => {
                const taken = await api.post<{ groupPointId: string }>(`${path}/points`);
                setCut(taken.groupPointId);
                points.reload();
              })
            }
          >
            Take a group point now
          </button>
        </div>
      )}
      <h2>Members</h2>
      <div className="table-wrap">
        <table className="stack" data-testid="group-members">
          <thead>
            <tr>
              <th scope="col">Machine</th>
              {operator && <th scope="col">Actions</th>}
            </tr>
          </thead>
          <tbody>
            {g.machineIds.map((id, i) => (
              <tr key={id} data-member={g.machineNames[i]}>
                <th scope="row">
                  <Link to={`/machines/${encodeURIComponent(id)}`}>{g.machineNames[i]}</Link>
                </th>
                {operator && (
                  <td data-label="Actions">
                    <button
                      type="button"
                      disabled={busy}
                      onClick={() =>
                        act(async () => {
                          await api.request('DELETE', `${path}/members/${encodeURIComponent(id)}`);
                          // The last member's removal ends the group.
                          if (g.machineIds.length === 1) navigate('/groups');
                          else group.reload();
                        })
                      }
                    >
                      Remove {g.machineNames[i]}
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {operator && (
        <form
          className="toolbar add-member"
          onSubmit={(event) => {
            event.preventDefault();
            act(async () => {
              await api.post(`${path}/members`, { machineId: adding });
              setAdding('');
              group.reload();
              machines.reload();
            });
          }}
        >
          <label htmlFor="group-add">Add a machine</label>
          <select id="group-add" value={adding} onChange={(e) => setAdding(e.target.value)}>
            <option value="">
              {candidates.length === 0 ? 'no protected machine outside a group' : 'choose…'}
            </option>
            {candidates.map((m) => (
              <option key={m.id} value={m.id}>
                {m.name}
              </option>
            ))}
          </select>
          <button type="submit" disabled={busy || adding === ''}>
            Add
          </button>
        </form>
      )}
    </section>
  );
}
