import type { Host, Site } from '../../../src/domain/model.ts';
import { Ago } from '../components/ago.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { FreeSpace, ProtectedDisks, useHostCapacity } from '../components/host-capacity.tsx';
import { formatTime } from '../format-time.ts';
import { Link } from '../router.tsx';
import { useResource } from '../use-resource.ts';

export function HostsPage() {
  const hosts = useResource<{ hosts: Host[] }>('/hosts', { refreshMs: 5000 });
  const sites = useResource<{ sites: Site[] }>('/sites');
  const health = useResource<{ version: string }>('/health');
  const siteOf = new Map((sites.data?.sites ?? []).map((s) => [s.id, s]));
  const list = hosts.data?.hosts ?? [];
  return (
    <section>
      <h1>Hosts</h1>
      <ErrorMessage error={hosts.error ?? sites.error} />
      {hosts.data && list.length === 0 && (
        <p className="muted">No hosts enrolled. Enrol one with haven host --vault URL --token TOKEN.</p>
      )}
      <div className="table-wrap">
        <table className="stack" data-testid="hosts-table">
          <thead>
            <tr>
              <th scope="col">Host</th>
              <th scope="col">Site</th>
              <th scope="col">Status</th>
              <th scope="col">Heartbeat</th>
              <th scope="col">Protected disks</th>
              <th scope="col">Free space</th>
              <th scope="col">Version</th>
            </tr>
          </thead>
          <tbody>
            {list.map((host) => (
              <HostRow
                key={host.id}
                host={host}
                site={siteOf.get(host.siteId)}
                vaultVersion={health.data?.version}
              />
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function HostRow({
  host,
  site,
  vaultVersion,
}: {
  host: Host;
  site: Site | undefined;
  vaultVersion?: string;
}) {
  const capacity = useHostCapacity(host.id);
  return (
    <tr data-host={host.name}>
      <th scope="row">
        <Link to={`/hosts/${encodeURIComponent(host.id)}`}>{host.name}</Link>
      </th>
      <td data-label="Site">{site ? <Link to={`/sites#site-${site.name}`}>{site.name}</Link> : '—'}</td>
      <td data-label="Status">
        <span className={`badge status-${host.status}`}>{host.status}</span>
      </td>
      <td data-label="Heartbeat" title={formatTime(host.lastHeartbeatAt)}>
        <Ago iso={host.lastHeartbeatAt} />
      </td>
      <td data-label="Protected disks">
        <ProtectedDisks capacity={capacity.data} />
      </td>
      <td data-label="Free space">
        <FreeSpace capacity={capacity.data} />
      </td>
      <td data-label="Version">
        <HostVersion version={host.version} vaultVersion={vaultVersion} />
      </td>
    </tr>
  );
}

/** A host agent on another version than the vault is shown as a warning: upgrade both together. */
export function HostVersion({ version, vaultVersion }: { version: string | null; vaultVersion?: string }) {
  if (!version) return <span className="muted">unknown</span>;
  if (vaultVersion && version !== vaultVersion) {
    return (
      <span className="badge health-warning" title={`The vault runs ${vaultVersion}`}>
        {version} (vault {vaultVersion})
      </span>
    );
  }
  return <>{version}</>;
}
