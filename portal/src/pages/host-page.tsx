import { type FormEvent, useState } from 'react';
import type { Host, Machine, Site } from '../../../src/domain/model.ts';
import type { HostDomains } from '../../../src/vault/import-domain.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { Ago } from '../components/ago.tsx';
import { StateBadge } from '../components/badges.tsx';
import { Dialog } from '../components/dialog.tsx';
import { DialogActions } from '../components/dialog-actions.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { Field, type Problem, problemsByField } from '../components/field.tsx';
import { FreeSpace, ProtectedDisks, useHostCapacity } from '../components/host-capacity.tsx';
import { ImportDomainDialog, LIBVIRT_CAPABILITY } from '../components/import-domain-dialog.tsx';
import { formatBytes, formatDuration, formatTime } from '../format-time.ts';
import { Link } from '../router.tsx';
import { canOperate, useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';
import { HostVersion } from './hosts-page.tsx';

export function HostPage({ id }: { id: string }) {
  const { role } = useSession();
  const [editingLimit, setEditingLimit] = useState(false);
  const host = useResource<Host>(`/hosts/${encodeURIComponent(id)}`, { refreshMs: 5000 });
  const sites = useResource<{ sites: Site[] }>('/sites');
  const health = useResource<{ version: string }>('/health');
  const machines = useResource<{ machines: Machine[] }>('/machines', { refreshMs: 10_000 });
  const capacity = useHostCapacity(id);

  if (host.error) {
    return (
      <section>
        <h1>Host</h1>
        <ErrorMessage error={host.error} />
        <Link to="/hosts">All hosts</Link>
      </section>
    );
  }
  const h = host.data;
  if (!h) return <p aria-busy="true">Loading…</p>;
  const site = sites.data?.sites.find((s) => s.id === h.siteId);
  const uses = (machines.data?.machines ?? []).filter(
    (m) => m.primaryHostId === h.id || m.recoveryHostId === h.id || m.activeHostId === h.id,
  );
  const c = capacity.data;
  return (
    <section>
      <p className="crumbs">
        <Link to="/hosts">Hosts</Link> /
      </p>
      <h1>
        {h.name} <span className={`badge status-${h.status}`}>{h.status}</span>
      </h1>
      <div className="grid">
        <article className="card">
          <h2>Host</h2>
          <dl className="facts">
            <dt>Site</dt>
            <dd>{site ? <Link to={`/sites#site-${site.name}`}>{site.name}</Link> : '—'}</dd>
            <dt>Heartbeat</dt>
            <dd title={formatTime(h.lastHeartbeatAt)}>
              <Ago iso={h.lastHeartbeatAt} />
            </dd>
            <dt>Version</dt>
            <dd>
              <HostVersion version={h.version} vaultVersion={health.data?.version} />
            </dd>
            <dt>Platform</dt>
            <dd>{c?.platform ?? '—'}</dd>
            <dt>System up</dt>
            <dd>{c?.uptimeSeconds != null ? formatDuration(c.uptimeSeconds) : '—'}</dd>
            <dt>Enrolled</dt>
            <dd>{formatTime(h.enrolledAt)}</dd>
            <dt>Replication</dt>
            <dd>{h.replicationAddress ?? '—'}</dd>
            <dt>Capabilities</dt>
            <dd>{h.capabilities.length ? h.capabilities.join(', ') : 'none reported'}</dd>
          </dl>
        </article>
        <article className="card">
          <h2>Capacity</h2>
          <dl className="facts">
            <dt>Protected disks</dt>
            <dd>
              <ProtectedDisks capacity={c} /> <span className="muted small">as recovery host</span>
              {role === 'admin' && (
                <button type="button" onClick={() => setEditingLimit(true)}>
                  Change limit…
                </button>
              )}
            </dd>
            <dt>Replica store</dt>
            <dd>
              <FreeSpace capacity={c} />
              {c?.storage && <div className="muted small">{c.storage.dataDir}</div>}
              {c?.storageUnavailable && <div className="muted small">{c.storageUnavailable}</div>}
            </dd>
            <dt>Image folders</dt>
            <dd>{h.storageFolders.length ? h.storageFolders.join(', ') : 'none'}</dd>
          </dl>
        </article>
        <article className="card wide">
          <h2>Machines on this host</h2>
          {uses.length === 0 ? (
            <p className="muted">No machine uses this host.</p>
          ) : (
            <ul className="hosts">
              {uses.map((m) => (
                <li key={m.id}>
                  <Link to={`/machines/${m.id}`}>{m.name}</Link> <StateBadge state={m.state} />{' '}
                  <span className="muted small">{roleOn(m, h.id)}</span>
                </li>
              ))}
            </ul>
          )}
        </article>
        {editingLimit && (
          <LimitDialog
            host={h}
            protectedDisks={c?.protectedDisks ?? null}
            onClose={() => setEditingLimit(false)}
            onSaved={() => {
              setEditingLimit(false);
              host.reload();
              capacity.reload();
            }}
          />
        )}
        {h.capabilities.includes(LIBVIRT_CAPABILITY) && (
          <article className="card wide">
            <h2>libvirt domains</h2>
            <Inventory host={h} machines={machines.data?.machines ?? []} />
          </article>
        )}
      </div>
    </section>
  );
}

/** An admin changes how many protected disks the host keeps as a recovery host. */
function LimitDialog({
  host,
  protectedDisks,
  onClose,
  onSaved,
}: {
  host: Host;
  protectedDisks: number | null;
  onClose: () => void;
  onSaved: () => void;
}) {
  const { api } = useSession();
  const [value, setValue] = useState(String(host.maxProtectedDisks));
  const [shown, setShown] = useState<Problem[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const errors = problemsByField(error, shown);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setError(undefined);
    const limit = Number(value);
    const problems: Problem[] =
      value.trim() === '' || !Number.isInteger(limit)
        ? [{ field: 'maxProtectedDisks', message: 'A whole number of disks, e.g. 64' }]
        : [];
    setShown(problems);
    if (problems.length > 0) return;
    setBusy(true);
    try {
      await api.request('PATCH', `/hosts/${encodeURIComponent(host.id)}`, { maxProtectedDisks: limit });
      onSaved();
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  };
  return (
    <Dialog title={`Protected-disk limit of ${host.name}`} onClose={onClose}>
      <form onSubmit={submit} noValidate data-testid="limit-form">
        <Field
          name="maxProtectedDisks"
          idPrefix="host"
          errors={errors}
          label={
            <>
              Protected disks at most{' '}
              <span className="hint">
                as recovery host
                {protectedDisks !== null && `; ${protectedDisks} now`}. New protection beyond it is refused.
              </span>
            </>
          }
        >
          {(props) => (
            <input
              {...props}
              type="number"
              inputMode="numeric"
              min={1}
              value={value}
              onChange={(e) => setValue(e.target.value)}
            />
          )}
        </Field>
        <DialogActions error={error} onCancel={onClose} disabled={busy}>
          {busy ? 'Saving…' : 'Save limit'}
        </DialogActions>
      </form>
    </Dialog>
  );
}

function roleOn(machine: Machine, hostId: string): string {
  const roles = [
    machine.primaryHostId === hostId ? 'primary' : null,
    machine.recoveryHostId === hostId ? 'recovery' : null,
    machine.activeHostId === hostId ? 'runs here' : null,
  ].filter((r) => r !== null);
  return roles.join(' · ');
}

/** The host's libvirt domains; an operator imports one that is not a machine yet. */
function Inventory({ host, machines }: { host: Host; machines: Machine[] }) {
  const { role } = useSession();
  const inventory = useResource<HostDomains>(`/hosts/${encodeURIComponent(host.id)}/domains`);
  const [importing, setImporting] = useState<string | null>(null);
  if (inventory.error) return <ErrorMessage error={inventory.error} />;
  const list = inventory.data;
  if (!list) return <p aria-busy="true">Asking the host for its domains…</p>;
  const imported = new Map(
    machines
      .filter((m) => m.primaryHostId === host.id && m.importedFrom)
      .map((m) => [m.importedFrom!.domain, m]),
  );
  return (
    <>
      <p className="muted small">
        {list.uri ?? list.driver}
        {list.source === 'vault' && (
          <>
            {' '}
            · as last reported <Ago iso={list.reportedAt} /> (the host is away)
          </>
        )}
      </p>
      {list.domains.length === 0 ? (
        <p className="muted">libvirt defines no domain.</p>
      ) : (
        <div className="table-wrap">
          <table className="stack" data-testid="inventory">
            <thead>
              <tr>
                <th scope="col">Domain</th>
                <th scope="col">State</th>
                <th scope="col">CPUs</th>
                <th scope="col">Memory</th>
                <th scope="col">Disks</th>
                <th scope="col">Haven</th>
              </tr>
            </thead>
            <tbody>
              {list.domains.map((d) => {
                const machine = imported.get(d.name);
                return (
                  <tr key={d.uuid ?? d.name} data-domain={d.name}>
                    <th scope="row">{d.name}</th>
                    <td data-label="State">{d.state}</td>
                    <td data-label="CPUs">{d.cpus}</td>
                    <td data-label="Memory">{formatBytes(d.memoryMiB * 1024 * 1024)}</td>
                    <td data-label="Disks">{d.disks.length}</td>
                    <td data-label="Haven">
                      {machine ? (
                        <Link to={`/machines/${machine.id}`}>{machine.name}</Link>
                      ) : canOperate(role) ? (
                        <button
                          type="button"
                          onClick={() => setImporting(d.name)}
                          aria-label={`Import ${d.name}…`}
                        >
                          Import…
                        </button>
                      ) : (
                        <span className="muted">not imported</span>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {importing !== null && (
        <ImportDomainDialog
          hosts={[host]}
          initial={{ hostId: host.id, domain: importing }}
          onClose={() => setImporting(null)}
        />
      )}
    </>
  );
}
