import type { Host, Site } from '../../../src/domain/model.ts';
import { Ago } from '../components/ago.tsx';
import { ErrorMessage } from '../components/error-message.tsx';

import { Link } from '../router.tsx';
import { useResource } from '../use-resource.ts';

export function SitesPage() {
  const sites = useResource<{ sites: Site[] }>('/sites');
  const hosts = useResource<{ hosts: Host[] }>('/hosts', { refreshMs: 10_000 });
  const list = sites.data?.sites ?? [];
  const nameOf = new Map(list.map((s) => [s.id, s.name]));
  return (
    <section>
      <h1>Sites</h1>
      <ErrorMessage error={sites.error ?? hosts.error} />
      {sites.data && list.length === 0 && <p className="muted">No sites yet.</p>}
      <div className="grid">
        {list.map((site) => {
          const at = (hosts.data?.hosts ?? []).filter((h) => h.siteId === site.id);
          const other = list.find((s) => s.id !== site.id);
          const mapping = Object.entries(site.networkMapping);
          return (
            <article className="card" key={site.id} id={`site-${site.name}`} data-site={site.name}>
              <h2>
                {site.name} <span className="badge">{site.role}</span>
              </h2>
              <h3>Hosts</h3>
              {at.length === 0 ? (
                <p className="muted">No host enrolled at this site.</p>
              ) : (
                <ul className="hosts">
                  {at.map((h) => (
                    <li key={h.id}>
                      <span className={`dot status-${h.status}`} aria-hidden="true" />
                      <Link to={`/hosts/${h.id}`}>{h.name}</Link>{' '}
                      <span className={`badge status-${h.status}`}>{h.status}</span>{' '}
                      <span className="muted small">
                        heartbeat <Ago iso={h.lastHeartbeatAt} />
                      </span>
                    </li>
                  ))}
                </ul>
              )}
              <h3>Network mapping</h3>
              {mapping.length === 0 ? (
                <p className="muted">No network mapped: recovered machines keep their network names.</p>
              ) : (
                <div className="table-wrap">
                  <table data-testid="network-mapping">
                    <thead>
                      <tr>
                        <th scope="col">Network here</th>
                        <th scope="col">
                          At {other ? (nameOf.get(other.id) ?? 'the other site') : 'the other site'}
                        </th>
                      </tr>
                    </thead>
                    <tbody>
                      {mapping.map(([here, there]) => (
                        <tr key={here}>
                          <td>{here}</td>
                          <td>{there}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              )}
              <h3>Test network</h3>
              <p data-testid="test-network">
                {site.testNetwork ?? <span className="muted">none: test failovers here need one</span>}
              </p>
            </article>
          );
        })}
      </div>
    </section>
  );
}
