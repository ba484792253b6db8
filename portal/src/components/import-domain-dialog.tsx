import { type FormEvent, useId, useState } from 'react';
import type { Host, Machine } from '../../../src/domain/model.ts';
import type { DomainDescription } from '../../../src/hypervisor/hypervisor.ts';
import type { HostDomains } from '../../../src/vault/import-domain.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { formatBytes, formatTime } from '../format-time.ts';
import { navigate } from '../router.tsx';
import { useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';
import { Dialog } from './dialog.tsx';
import { ErrorMessage } from './error-message.tsx';

/** The capability a host agent reports when it drives libvirt (`haven host --libvirt URI`). */
export const LIBVIRT_CAPABILITY = 'hypervisor:libvirt';

/** The request's fields a refusal can name; each refusal shows at its field. */
type ImportField = 'hostId' | 'domain' | 'name';
const IMPORT_FIELDS: readonly string[] = ['hostId', 'domain', 'name'] satisfies ImportField[];

/**
 * Registers one of a libvirt host's domains as a machine (POST
 * /machines/import): lists the host's domains as its inventory reports them,
 * the operator picks one and optionally Haven's name for it. A refusal that
 * names a field shows at that field.
 */
export function ImportDomainDialog({
  hosts,
  onClose,
  initial,
}: {
  hosts: Host[];
  onClose: () => void;
  /** Opened from a host's inventory: that host and domain are already picked. */
  initial?: { hostId: string; domain: string };
}) {
  const { api } = useSession();
  const id = useId();
  const [hostId, setHostId] = useState(initial?.hostId ?? hosts[0]?.id ?? '');
  const [domain, setDomain] = useState(initial?.domain ?? '');
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const inventory = useResource<HostDomains>(hostId ? `/hosts/${encodeURIComponent(hostId)}/domains` : null);
  const list = inventory.data?.hostId === hostId ? inventory.data : undefined;
  const host = hosts.find((h) => h.id === hostId);

  const field = error && typeof error.details.field === 'string' ? error.details.field : null;
  const at = (f: ImportField) => (error && field === f ? error.message : null);
  const errorId = (f: ImportField) => `${id}-${f}-error`;

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const body = { hostId, domain, ...(name.trim() ? { name: name.trim() } : {}) };
      const machine = await api.post<Machine>('/machines/import', body);
      onClose();
      navigate(`/machines/${machine.id}`);
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  };

  return (
    <Dialog title="Import a libvirt domain" onClose={onClose} wide>
      <form onSubmit={submit} className="import-form" noValidate>
        <p>
          Registers a domain the host's libvirt runs as an unprotected machine: its disks and recovery
          settings come from the domain. The domain keeps running; protect it afterwards.
        </p>
        <div className={`field${at('hostId') ? ' invalid' : ''}`}>
          <label htmlFor={`${id}-host`}>Host</label>
          <select
            id={`${id}-host`}
            value={hostId}
            onChange={(e) => {
              setHostId(e.target.value);
              setDomain('');
            }}
            aria-invalid={at('hostId') !== null}
            aria-describedby={at('hostId') ? errorId('hostId') : undefined}
          >
            {hosts.map((h) => (
              <option key={h.id} value={h.id}>
                {h.name} ({h.status})
              </option>
            ))}
          </select>
          <FieldError id={errorId('hostId')} field="hostId" message={at('hostId')} />
        </div>
        {inventory.error && <ErrorMessage error={inventory.error} />}
        {list?.source === 'vault' && (
          <p className="warning" role="status" data-testid="inventory-source">
            Host {host?.name ?? hostId} is {host?.status ?? 'not connected'}: these are the domains it last
            reported, at {formatTime(list.reportedAt)}. An import needs the host connected.
          </p>
        )}
        <DomainTable
          id={id}
          hostDomains={list}
          loading={inventory.loading && !list}
          selected={domain}
          onSelect={(d) => setDomain(d)}
          invalid={at('domain') !== null}
          describedBy={at('domain') ? errorId('domain') : undefined}
        />
        <FieldError id={errorId('domain')} field="domain" message={at('domain')} />
        <div className={`field${at('name') ? ' invalid' : ''}`}>
          <label htmlFor={`${id}-name`}>Haven name (optional)</label>
          <input
            id={`${id}-name`}
            value={name}
            placeholder={domain || undefined}
            onChange={(e) => setName(e.target.value)}
            aria-invalid={at('name') !== null}
            aria-describedby={[`${id}-name-hint`, at('name') ? errorId('name') : ''].join(' ').trim()}
          />
          <p id={`${id}-name-hint`} className="hint">
            Lowercase letters, digits and inner hyphens. Empty: the domain's name.
          </p>
          <FieldError id={errorId('name')} field="name" message={at('name')} />
        </div>
        {error && (field === null || !IMPORT_FIELDS.includes(field)) && <ErrorMessage error={error} />}
        <div className="dialog-actions">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={busy || domain === ''}>
            {busy ? 'Importing…' : 'Import'}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

/** A refusal naming this field, announced with it. */
function FieldError({ id, field, message }: { id: string; field: ImportField; message: string | null }) {
  if (message === null) return null;
  return (
    <p id={id} className="field-error" role="alert" data-field={field}>
      {message}
    </p>
  );
}

function DomainTable({
  id,
  hostDomains,
  loading,
  selected,
  onSelect,
  invalid,
  describedBy,
}: {
  id: string;
  hostDomains: HostDomains | undefined;
  loading: boolean;
  selected: string;
  onSelect: (name: string) => void;
  invalid: boolean;
  describedBy: string | undefined;
}) {
  if (loading) return <p aria-busy="true">Asking the host for its domains…</p>;
  if (!hostDomains) return null;
  if (hostDomains.domains.length === 0) {
    return <p className="muted">The host's libvirt ({hostDomains.uri ?? 'no URI'}) defines no domain.</p>;
  }
  return (
    <fieldset
      className={`domains${invalid ? ' invalid' : ''}`}
      aria-describedby={describedBy}
      data-testid="domains"
    >
      <legend>
        Domain <span className="hint">on {hostDomains.uri ?? hostDomains.driver}</span>
      </legend>
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">
                <span className="sr-only">Pick</span>
              </th>
              <th scope="col">Name</th>
              <th scope="col">State</th>
              <th scope="col">CPUs</th>
              <th scope="col">Memory</th>
              <th scope="col">Disks</th>
              <th scope="col">NICs</th>
              <th scope="col">Guest agent</th>
            </tr>
          </thead>
          <tbody>
            {hostDomains.domains.map((d) => (
              <tr key={d.uuid ?? d.name} data-domain={d.name}>
                <td>
                  <input
                    type="radio"
                    id={`${id}-domain-${d.name}`}
                    name={`${id}-domain`}
                    value={d.name}
                    checked={selected === d.name}
                    onChange={() => onSelect(d.name)}
                  />
                </td>
                <td>
                  <label htmlFor={`${id}-domain-${d.name}`}>{d.name}</label>
                </td>
                <td>{d.state}</td>
                <td>{d.cpus}</td>
                <td>{formatBytes(d.memoryMiB * 1024 * 1024)}</td>
                <td>
                  <DiskList disks={d.disks} />
                </td>
                <td>
                  {d.nics.length === 0
                    ? 'none'
                    : d.nics.map((n) => (
                        <div key={`${n.mac}:${n.network}`}>
                          {n.mac ?? 'no MAC'} on {n.network ?? n.type}
                        </div>
                      ))}
                </td>
                <td>{d.guestAgent ? 'yes' : 'no'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </fieldset>
  );
}

function DiskList({ disks }: { disks: DomainDescription['disks'] }) {
  if (disks.length === 0) return <>none</>;
  return (
    <>
      {disks.map((k) => (
        <div key={k.target} title={'path' in k.source ? k.source.path : undefined}>
          {k.target} · {k.format ?? 'format unknown'} ·{' '}
          {k.virtualSizeBytes === null ? 'size unknown' : formatBytes(k.virtualSizeBytes)}
          {k.device !== 'disk' ? ` (${k.device})` : ''}
        </div>
      ))}
    </>
  );
}
