import { type FormEvent, useState } from 'react';
import { parseBmcUrl } from '../../../src/domain/bmc-url.ts';
import type { Host, Machine, Site } from '../../../src/domain/model.ts';
import { parseSize } from '../../../src/text/human-units.ts';
import type { ServerEnrolmentIssued } from '../../../src/vault/servers/server-onboarding.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { Link } from '../router.tsx';
import { useSession } from '../session.tsx';
import { Dialog } from './dialog.tsx';
import { DialogActions } from './dialog-actions.tsx';
import { Field, type Problem, problemsByField } from './field.tsx';
import { ServerCommands } from './server-commands.tsx';

/** The capability a host agent reports when it serves physical servers (`haven host --server-listen`). */
const SERVER_LINK_CAPABILITY = 'server-link';

interface DiskRow {
  key: number;
  id: string;
  device: string;
  size: string;
}

interface Form {
  name: string;
  siteId: string;
  hostId: string;
  disks: DiskRow[];
  writeBehind: boolean;
  writeBehindWrites: string;
  nbdTimeoutSeconds: string;
  cpus: string;
  memoryMiB: string;
  network: string;
  /** ipmi://USER@HOST[:PORT]; empty: the server has no BMC. */
  bmcUrl: string;
  bmcPassword: string;
}

type Added = { machine: Machine } & ServerEnrolmentIssued;

/** Whole numbers typed in the form; anything else is named at its field before the vault is asked. */
function wholeNumber(text: string, field: string, problems: Problem[]): number {
  const value = Number(text.trim());
  if (text.trim() === '' || !Number.isInteger(value)) problems.push({ field, message: 'a whole number' });
  return value;
}

function bodyOf(form: Form): { body: object; problems: Problem[] } {
  const problems: Problem[] = [];
  const disks = form.disks.map((d, i) => {
    let sizeBytes = 0;
    try {
      sizeBytes = parseSize(d.size);
    } catch {
      problems.push({ field: `disks.${i}.sizeBytes`, message: 'a size like 64G or 512MiB' });
    }
    return { id: d.id.trim(), device: d.device.trim(), sizeBytes };
  });
  const name = form.name.trim();
  const network = form.network.trim();
  let bmc: object | null = null;
  if (form.bmcUrl.trim() !== '') {
    try {
      bmc = { ...parseBmcUrl(form.bmcUrl.trim(), 'BMC'), password: form.bmcPassword };
    } catch (e) {
      problems.push({ field: 'bmc', message: (e as Error).message.replace(/^BMC: /, '') });
    }
    if (form.bmcPassword === '') problems.push({ field: 'bmc.password', message: "the BMC user's password" });
  }
  const body = {
    name,
    siteId: form.siteId,
    ...(form.hostId ? { hostId: form.hostId } : {}),
    disks,
    writeBehind: form.writeBehind ? wholeNumber(form.writeBehindWrites, 'writeBehind', problems) : null,
    nbdTimeoutSeconds: wholeNumber(form.nbdTimeoutSeconds, 'nbdTimeoutSeconds', problems),
    bmc,
    recoverySettings: {
      targetName: name,
      cpus: wholeNumber(form.cpus, 'cpus', problems),
      memoryMiB: wholeNumber(form.memoryMiB, 'memoryMiB', problems),
      nics: network ? [{ network }] : [],
    },
  };
  return { body, problems };
}

/** The fields a refusal can name here (as field keys); any other refusal shows at the foot. */
function shownAtField(key: string, form: Form): boolean {
  if (
    ['name', 'siteId', 'hostId', 'disks', 'writeBehind', 'nbdTimeoutSeconds', 'cpus', 'memoryMiB'].includes(
      key,
    )
  )
    return true;
  if (key === 'nics.0.network' || key === 'targetName' || key === 'bmc' || key === 'bmc.password')
    return true;
  const disk = /^disks\.(\d+)\.(id|device|sizeBytes)$/.exec(key);
  return disk !== null && Number(disk[1]) < form.disks.length;
}

/**
 * Adds a physical server (POST /servers, operator): its name, primary site
 * and the host there its NBD legs connect to, the block devices md mirrors,
 * how writes reach the leg (synchronous, or write-behind with its weaker
 * ordering said where it is chosen), nbd-client's timeout, and the VM it
 * becomes at the recovery site. On success the commands for the server
 * show once.
 */
export function AddServerDialog({
  sites,
  hosts,
  onClose,
  onAdded,
}: {
  sites: Site[];
  hosts: Host[];
  onClose: () => void;
  onAdded: () => void;
}) {
  const { api } = useSession();
  const firstSite = sites.find((s) => s.role === 'primary') ?? sites[0];
  const hostsOf = (siteId: string) => hosts.filter((h) => h.siteId === siteId);
  const defaultHost = (siteId: string) => {
    const inSite = hostsOf(siteId);
    return (inSite.find((h) => h.capabilities.includes(SERVER_LINK_CAPABILITY)) ?? inSite[0])?.id ?? '';
  };
  const [nextKey, setNextKey] = useState(1);
  const [form, setForm] = useState<Form>(() => ({
    name: '',
    siteId: firstSite?.id ?? '',
    hostId: defaultHost(firstSite?.id ?? ''),
    disks: [{ key: 0, id: 'disk0', device: '/dev/sda', size: '' }],
    writeBehind: false,
    writeBehindWrites: '256',
    nbdTimeoutSeconds: '30',
    cpus: '2',
    memoryMiB: '2048',
    network: '',
    bmcUrl: '',
    bmcPassword: '',
  }));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const [local, setLocal] = useState<Problem[]>([]);
  const [added, setAdded] = useState<Added>();
  const set = (patch: Partial<Form>) => setForm((f) => ({ ...f, ...patch }));
  const setDisk = (key: number, patch: Partial<DiskRow>) =>
    setForm((f) => ({ ...f, disks: f.disks.map((d) => (d.key === key ? { ...d, ...patch } : d)) }));
  const errors = problemsByField(error, local);
  const unplaced =
    error && ![...problemsByField(error).keys()].some((k) => shownAtField(k, form)) ? error : undefined;

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const { body, problems } = bodyOf(form);
    setError(undefined);
    setLocal(problems);
    if (problems.length > 0) return;
    setBusy(true);
    try {
      setAdded(await api.post<Added>('/servers', body));
      onAdded();
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };

  if (added) {
    return (
      <Dialog title={`Server ${added.machine.name} added`} onClose={onClose} wide>
        <p>
          <Link to={`/machines/${added.machine.id}`}>{added.machine.name}</Link> is a machine of kind physical
          server, unprotected until its agent enrols and replication is enabled.
        </p>
        <ServerCommands name={added.machine.name} enrolment={added} />
        <div className="dialog-actions">
          <button type="button" className="primary" onClick={onClose}>
            Done
          </button>
        </div>
      </Dialog>
    );
  }

  const siteHosts = hostsOf(form.siteId);
  return (
    <Dialog title="Add a physical server" onClose={onClose} wide>
      <form onSubmit={submit} className="add-server" noValidate>
        <p>
          Haven protects a Linux server through the kernel's own mirror: each block device becomes an md raid1
          of the server's device and an NBD leg on a host at the primary site. The server fails over as a VM.
        </p>
        <Field name="name" label="Name" errors={errors} idPrefix="srv">
          {(p) => <input {...p} value={form.name} onChange={(e) => set({ name: e.target.value })} />}
        </Field>
        <div className="row">
          <Field name="siteId" label="Primary site" errors={errors} idPrefix="srv">
            {(p) => (
              <select
                {...p}
                value={form.siteId}
                onChange={(e) => set({ siteId: e.target.value, hostId: defaultHost(e.target.value) })}
              >
                {sites.map((s) => (
                  <option key={s.id} value={s.id}>
                    {s.name} ({s.role})
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field name="hostId" label="Host the legs connect to" errors={errors} idPrefix="srv">
            {(p) => (
              <select {...p} value={form.hostId} onChange={(e) => set({ hostId: e.target.value })}>
                {siteHosts.length === 0 && <option value="">the site has no host</option>}
                {siteHosts.map((h) => (
                  <option key={h.id} value={h.id}>
                    {h.name}
                    {h.status === 'connected' ? '' : ` (${h.status})`}
                    {h.capabilities.includes(SERVER_LINK_CAPABILITY) ? '' : ' (serves no servers)'}
                  </option>
                ))}
              </select>
            )}
          </Field>
        </div>
        <fieldset className="server-disks">
          <legend>Protected block devices</legend>
          {errors.get('disks') && (
            <p className="field-error" data-field="disks">
              {errors.get('disks')!.join('; ')}
            </p>
          )}
          {form.disks.map((d, i) => (
            <div className="row server-disk" key={d.key} data-disk-row={i}>
              <Field name={`disks.${i}.id`} label="Disk id" errors={errors} idPrefix="srv">
                {(p) => (
                  <input {...p} value={d.id} onChange={(e) => setDisk(d.key, { id: e.target.value })} />
                )}
              </Field>
              <Field name={`disks.${i}.device`} label="Device" errors={errors} idPrefix="srv">
                {(p) => (
                  <input
                    {...p}
                    className="mono"
                    value={d.device}
                    onChange={(e) => setDisk(d.key, { device: e.target.value })}
                  />
                )}
              </Field>
              <Field name={`disks.${i}.sizeBytes`} label="Size" errors={errors} idPrefix="srv">
                {(p) => (
                  <input
                    {...p}
                    value={d.size}
                    placeholder="64G"
                    onChange={(e) => setDisk(d.key, { size: e.target.value })}
                  />
                )}
              </Field>
              <button
                type="button"
                className="remove-disk"
                aria-label={`Remove disk ${i + 1}`}
                disabled={form.disks.length === 1}
                onClick={() => set({ disks: form.disks.filter((x) => x.key !== d.key) })}
              >
                Remove
              </button>
            </div>
          ))}
          <button
            type="button"
            onClick={() => {
              set({
                disks: [
                  ...form.disks,
                  { key: nextKey, id: `disk${form.disks.length}`, device: '', size: '' },
                ],
              });
              setNextKey((k) => k + 1);
            }}
          >
            Add disk
          </button>
        </fieldset>
        <fieldset className="radios">
          <legend>Writes to the NBD leg</legend>
          <label>
            <input
              type="radio"
              name="srv-ordering"
              checked={!form.writeBehind}
              onChange={() => set({ writeBehind: false })}
            />
            Synchronous: md completes a write once the leg has it too (order kept; each write waits for the
            link)
          </label>
          <label>
            <input
              type="radio"
              name="srv-ordering"
              checked={form.writeBehind}
              onChange={() => set({ writeBehind: true })}
            />
            Write-behind, for a slow link
          </label>
        </fieldset>
        {form.writeBehind && (
          <>
            <p className="warning" role="status" data-testid="write-behind-warning">
              Weaker ordering: md completes writes before the NBD leg has them, so a recovery point (and so a
              failover) can miss up to that many writes the server already completed.
            </p>
            <Field name="writeBehind" label="Writes the leg may lag behind" errors={errors} idPrefix="srv">
              {(p) => (
                <input
                  {...p}
                  inputMode="numeric"
                  value={form.writeBehindWrites}
                  onChange={(e) => set({ writeBehindWrites: e.target.value })}
                />
              )}
            </Field>
          </>
        )}
        <Field name="nbdTimeoutSeconds" label="nbd-client timeout (seconds)" errors={errors} idPrefix="srv">
          {(p) => (
            <input
              {...p}
              inputMode="numeric"
              value={form.nbdTimeoutSeconds}
              onChange={(e) => set({ nbdTimeoutSeconds: e.target.value })}
            />
          )}
        </Field>
        <fieldset className="server-bmc">
          <legend>Its BMC (optional)</legend>
          <p>
            With a BMC Haven sees and controls the server's power from the primary-site host: a verified
            fence, a soft off for a planned failover, a network boot for failback. The password is kept apart
            and never shown again.
          </p>
          <div className="row">
            <Field name="bmc" label="IPMI address" errors={errors} idPrefix="srv">
              {(p) => (
                <input
                  {...p}
                  className="mono"
                  placeholder="ipmi://USER@HOST[:PORT]"
                  value={form.bmcUrl}
                  onChange={(e) => set({ bmcUrl: e.target.value })}
                />
              )}
            </Field>
            <Field name="bmc.password" label="Password" errors={errors} idPrefix="srv">
              {(p) => (
                <input
                  {...p}
                  type="password"
                  autoComplete="off"
                  value={form.bmcPassword}
                  onChange={(e) => set({ bmcPassword: e.target.value })}
                />
              )}
            </Field>
          </div>
        </fieldset>
        <fieldset>
          <legend>The VM it becomes at the recovery site</legend>
          <div className="row">
            <Field name="cpus" label="CPUs" errors={errors} idPrefix="srv">
              {(p) => (
                <input
                  {...p}
                  inputMode="numeric"
                  value={form.cpus}
                  onChange={(e) => set({ cpus: e.target.value })}
                />
              )}
            </Field>
            <Field name="memoryMiB" label="Memory (MiB)" errors={errors} idPrefix="srv">
              {(p) => (
                <input
                  {...p}
                  inputMode="numeric"
                  value={form.memoryMiB}
                  onChange={(e) => set({ memoryMiB: e.target.value })}
                />
              )}
            </Field>
            <Field name="nics.0.network" label="Network (optional)" errors={errors} idPrefix="srv">
              {(p) => (
                <input {...p} value={form.network} onChange={(e) => set({ network: e.target.value })} />
              )}
            </Field>
          </div>
        </fieldset>
        <DialogActions error={unplaced} onCancel={onClose} disabled={busy}>
          {busy ? 'Adding…' : 'Add server'}
        </DialogActions>
      </form>
    </Dialog>
  );
}
