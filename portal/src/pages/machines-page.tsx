import { useMemo, useState } from 'react';
import type { TargetProof } from '../../../src/domain/drill.ts';
import type { Host, Machine } from '../../../src/domain/model.ts';
import { HealthBadge, StateBadge } from '../components/badges.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { ImportDomainDialog, LIBVIRT_CAPABILITY } from '../components/import-domain-dialog.tsx';
import { ProofBadge, proofsById } from '../components/proof-badge.tsx';
import { machineKindText } from '../machine-kind.ts';
import { Link } from '../router.tsx';
import { canOperate, useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';

const PAGE = 200;

type Filters = { q: string; state: string; health: string; host: string };

function readFilters(): Filters {
  const query = new URLSearchParams(window.location.search);
  return {
    q: query.get('q') ?? '',
    state: query.get('state') ?? '',
    health: query.get('health') ?? '',
    host: query.get('host') ?? '',
  };
}

/** Filters live in the address so a filtered list can be reloaded and shared. */
function writeFilters(filters: Filters): void {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) query.set(k, v);
  const search = query.toString();
  history.replaceState(null, '', `/machines${search ? `?${search}` : ''}`);
}

export function MachinesPage() {
  const { role } = useSession();
  const machines = useResource<{ machines: Machine[] }>('/machines', { refreshMs: 10_000 });
  const hosts = useResource<{ hosts: Host[] }>('/hosts');
  const proofs = useResource<{ proofs: TargetProof[] }>('/proofs', { refreshMs: 10_000 });
  const proofOf = useMemo(() => proofsById(proofs.data?.proofs, 'machine'), [proofs.data]);
  const [filters, setFilters] = useState<Filters>(readFilters);
  const [limit, setLimit] = useState(PAGE);
  const [importing, setImporting] = useState(false);
  const update = (patch: Partial<Filters>) => {
    const next = { ...filters, ...patch };
    setFilters(next);
    setLimit(PAGE);
    writeFilters(next);
  };

  const all = machines.data?.machines ?? [];
  const hostName = new Map((hosts.data?.hosts ?? []).map((h) => [h.id, h.name]));
  // Only hosts whose agent drives libvirt have domains to import; viewers import nothing (the vault refuses them too).
  const libvirtHosts = (hosts.data?.hosts ?? []).filter((h) => h.capabilities.includes(LIBVIRT_CAPABILITY));
  const states = useMemo(() => [...new Set(all.map((m) => m.state))].sort(), [all]);
  const q = filters.q.trim().toLowerCase();
  const shown = all.filter(
    (m) =>
      (!q || m.name.toLowerCase().includes(q)) &&
      (!filters.state || m.state === filters.state) &&
      (!filters.health || m.health === filters.health) &&
      (!filters.host ||
        m.activeHostId === filters.host ||
        m.primaryHostId === filters.host ||
        m.recoveryHostId === filters.host),
  );

  return (
    <section>
      <h1>Machines</h1>
      <ErrorMessage error={machines.error} />
      {canOperate(role) && libvirtHosts.length > 0 && (
        <fieldset className="actions">
          <legend className="sr-only">Actions</legend>
          <button type="button" onClick={() => setImporting(true)}>
            Import domain…
          </button>
        </fieldset>
      )}
      {importing && <ImportDomainDialog hosts={libvirtHosts} onClose={() => setImporting(false)} />}
      <form className="filters" aria-label="Filter machines" onSubmit={(e) => e.preventDefault()}>
        <div className="field">
          <label htmlFor="filter-q">Name</label>
          <input
            id="filter-q"
            type="search"
            value={filters.q}
            onChange={(e) => update({ q: e.target.value })}
          />
        </div>
        <div className="field">
          <label htmlFor="filter-state">State</label>
          <select id="filter-state" value={filters.state} onChange={(e) => update({ state: e.target.value })}>
            <option value="">any</option>
            {[...new Set([...states, ...(filters.state ? [filters.state] : [])])].map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="filter-health">Health</label>
          <select
            id="filter-health"
            value={filters.health}
            onChange={(e) => update({ health: e.target.value })}
          >
            <option value="">any</option>
            {['healthy', 'warning', 'critical', 'unknown'].map((h) => (
              <option key={h}>{h}</option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="filter-host">Host</label>
          <select id="filter-host" value={filters.host} onChange={(e) => update({ host: e.target.value })}>
            <option value="">any</option>
            {(hosts.data?.hosts ?? []).map((h) => (
              <option key={h.id} value={h.id}>
                {h.name}
              </option>
            ))}
          </select>
        </div>
      </form>
      <p className="muted" aria-live="polite">
        {machines.data ? `${shown.length} of ${all.length} machines` : 'Loading…'}
      </p>
      <div className="table-wrap">
        <table className="machines">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">State</th>
              <th scope="col">Health</th>
              <th scope="col">Proof</th>
              <th scope="col">Running on</th>
              <th scope="col">Disks</th>
            </tr>
          </thead>
          <tbody>
            {shown.slice(0, limit).map((m) => (
              <tr key={m.id}>
                <td>
                  <Link to={`/machines/${m.id}`}>{m.name}</Link>
                  {(m.server || m.importedFrom) && (
                    <span className="muted small"> · {machineKindText(m)}</span>
                  )}
                </td>
                <td>
                  <StateBadge state={m.state} />
                </td>
                <td>
                  <HealthBadge health={m.health} />
                </td>
                <td>{proofs.data && <ProofBadge proof={proofOf.get(m.id)} />}</td>
                <td>{hostName.get(m.activeHostId) ?? m.activeHostId}</td>
                <td>{m.disks.length}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {shown.length > limit && (
        <button type="button" onClick={() => setLimit((l) => l + PAGE * 5)}>
          Show more ({shown.length - limit} not shown)
        </button>
      )}
    </section>
  );
}
