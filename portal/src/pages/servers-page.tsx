import { useState } from 'react';
import type { Host, Machine, Site } from '../../../src/domain/model.ts';
import { AddServerDialog } from '../components/add-server-dialog.tsx';
import { Ago } from '../components/ago.tsx';
import { StateBadge } from '../components/badges.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { ServerEnrolmentDialog } from '../components/server-enrolment-dialog.tsx';
import { ServerLinkState } from '../components/server-link-state.tsx';
import { formatTime } from '../format-time.ts';
import { Link } from '../router.tsx';
import { canOperate, useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';

/**
 * Physical servers (machines of kind server): their state, their link in
 * words, when their agent enrolled and last reported. Operators add servers
 * and issue new enrolments; viewers only see.
 */
export function ServersPage() {
  const { role } = useSession();
  const servers = useResource<{ servers: Machine[] }>('/servers', { refreshMs: 5000 });
  const hosts = useResource<{ hosts: Host[] }>('/hosts');
  const sites = useResource<{ sites: Site[] }>('/sites');
  const [adding, setAdding] = useState(false);
  const [enrolling, setEnrolling] = useState<Machine | null>(null);
  const operator = canOperate(role);
  const list = servers.data?.servers ?? [];
  const hostName = (id: string) => hosts.data?.hosts.find((h) => h.id === id)?.name ?? id;

  return (
    <section>
      <h1>Servers</h1>
      <p className="muted">
        Physical Linux servers protected through the kernel's own mirror (md raid1 with an NBD leg on a
        primary-site host). They fail over as VMs.
      </p>
      <ErrorMessage error={servers.error} />
      {operator && (
        <fieldset className="actions">
          <legend className="sr-only">Actions</legend>
          <button type="button" onClick={() => setAdding(true)} disabled={!sites.data || !hosts.data}>
            Add server…
          </button>
        </fieldset>
      )}
      {servers.data && list.length === 0 && (
        <p className="muted">
          No physical server yet.{operator ? ' Add one: Haven gives the commands to run on it.' : ''}
        </p>
      )}
      {list.length > 0 && (
        <div className="table-wrap">
          <table className="stack servers" data-testid="servers-table">
            <thead>
              <tr>
                <th scope="col">Server</th>
                <th scope="col">State</th>
                <th scope="col">Link</th>
                <th scope="col">Host</th>
                <th scope="col">Enrolled</th>
                <th scope="col">Agent's last report</th>
                {operator && (
                  <th scope="col">
                    <span className="sr-only">Actions</span>
                  </th>
                )}
              </tr>
            </thead>
            <tbody>
              {list.map((m) => (
                <tr key={m.id} data-server={m.name}>
                  <th scope="row">
                    <Link to={`/machines/${encodeURIComponent(m.id)}`}>{m.name}</Link>
                  </th>
                  <td data-label="State">
                    <StateBadge state={m.state} />
                  </td>
                  <td data-label="Link" className="wrap" data-testid="server-link">
                    <ServerLinkState machine={m} />
                  </td>
                  <td data-label="Host">{hostName(m.primaryHostId)}</td>
                  <td data-label="Enrolled" data-testid="enrolled-at">
                    {m.server?.enrolledAt ? formatTime(m.server.enrolledAt) : 'not yet'}
                  </td>
                  <td data-label="Agent's last report" data-testid="last-report">
                    {m.replication?.server?.agent ? (
                      <Ago iso={m.replication.server.agent.receivedAt} />
                    ) : (
                      'none'
                    )}
                  </td>
                  {operator && (
                    <td data-label="Actions">
                      <button type="button" onClick={() => setEnrolling(m)}>
                        New enrolment…
                      </button>
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {adding && sites.data && hosts.data && (
        <AddServerDialog
          sites={sites.data.sites}
          hosts={hosts.data.hosts}
          onClose={() => setAdding(false)}
          onAdded={() => servers.reload()}
        />
      )}
      {enrolling && <ServerEnrolmentDialog machine={enrolling} onClose={() => setEnrolling(null)} />}
    </section>
  );
}
