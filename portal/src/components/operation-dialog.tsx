import { type FormEvent, type ReactNode, useId, useState } from 'react';
import type { LifecycleOperation } from '../../../src/domain/lifecycle.ts';
import type { Host, Machine, Policy, RecoveryPoint, Site } from '../../../src/domain/model.ts';
import { type ApiError, asApiError, type JobWithCancel } from '../api-client.ts';
import { newestFirst, OPERATION_TEXT, POINT_OPTIONS, type RecoveryPointOption } from '../operations.ts';
import { navigate } from '../router.tsx';
import { useSession } from '../session.tsx';
import { AlternateHostSelect, withAlternateHost } from './alternate-host-select.tsx';
import { Dialog } from './dialog.tsx';
import { DialogActions } from './dialog-actions.tsx';
import { PointPicker } from './point-picker.tsx';

export interface OperationContext {
  machine: Machine;
  points: RecoveryPoint[];
  /** The point picked on the timeline, offered as the custom point. */
  selectedPointId: string | null;
  hosts: Host[];
  sites: Site[];
  policies: Policy[];
}

/**
 * One dialog per lifecycle operation, mirroring SPEC §2–3. It posts the
 * operation and, when the vault accepts it, opens the job; otherwise it shows
 * the vault's answer (state conflict, validation problems, not available).
 */
export function OperationDialog({
  operation,
  context,
  onClose,
}: {
  operation: LifecycleOperation;
  context: OperationContext;
  onClose: () => void;
}) {
  const { api } = useSession();
  const text = OPERATION_TEXT[operation];
  const [body, setBody] = useState<Record<string, unknown>>(() => initialBody(operation, context));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const set = (patch: Record<string, unknown>) => setBody((b) => ({ ...b, ...patch }));

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const job = await api.post<JobWithCancel>(
        `/machines/${context.machine.id}/${operation}`,
        cleanBody(operation, body),
      );
      onClose();
      navigate(`/jobs/${job.id}`);
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  };

  return (
    <Dialog title={`${text.title}: ${context.machine.name}`} onClose={onClose}>
      <form onSubmit={submit} className="operation-form" data-operation={operation}>
        <p>{text.explain}</p>
        <OperationFields operation={operation} context={context} body={body} set={set} />
        <DialogActions
          error={error}
          onCancel={onClose}
          disabled={busy}
          cancelText={error ? 'Close' : 'Cancel'}
          danger={operation === 'failover'}
        >
          {busy ? 'Starting…' : text.title}
        </DialogActions>
      </form>
    </Dialog>
  );
}

function initialBody(operation: LifecycleOperation, c: OperationContext): Record<string, unknown> {
  const point = c.selectedPointId ? { option: 'custom', pointId: c.selectedPointId } : { option: 'latest' };
  switch (operation) {
    case 'test-failover':
      return { recoveryPoint: point, network: testNetworkOf(c) ?? '' };
    case 'failover':
      return { recoveryPoint: point, shutdownSource: true };
    case 'change-recovery-point':
      return { recoveryPoint: point };
    case 'cleanup-test-failover':
      return { notes: '' };
    case 'failback':
      return { dataSync: 'before-failover', location: c.machine.originalExists ? 'original' : 'alternate' };
    case 'reprotect':
      return { location: 'original', fullResync: false };
    case 'enable-replication': {
      const host = c.hosts.find((h) => h.id !== c.machine.activeHostId);
      const policy = c.policies.find((p) => !p.builtIn) ?? c.policies[0];
      return { recoveryHostId: host?.id ?? '', policyId: policy?.id ?? '' };
    }
    case 'resync':
      return { full: false };
    default:
      return {};
  }
}

/** Turns the form's state into the request body the API's schema expects. */
function cleanBody(operation: LifecycleOperation, body: Record<string, unknown>): Record<string, unknown> {
  if (operation === 'failback' || operation === 'reprotect') return withAlternateHost(body);
  const { network, ...rest } = body;
  if (operation === 'test-failover') return network ? { ...rest, network } : rest;
  if (operation === 'planned-failover') {
    const seconds = Number(body.forceOffAfterSeconds);
    return body.forceOffAfterSeconds !== '' && Number.isInteger(seconds) && seconds > 0
      ? { forceOffAfterSeconds: seconds }
      : {};
  }
  return body;
}

function testNetworkOf(c: OperationContext): string | null {
  const host = c.hosts.find((h) => h.id === c.machine.recoveryHostId);
  const site = c.sites.find((s) => s.id === host?.siteId) ?? c.sites.find((s) => s.role === 'recovery');
  return site?.testNetwork ?? null;
}

function OperationFields({
  operation,
  context,
  body,
  set,
}: {
  operation: LifecycleOperation;
  context: OperationContext;
  body: Record<string, unknown>;
  set: (patch: Record<string, unknown>) => void;
}) {
  const id = useId();
  // Failback and reprotect to an alternate location: a new machine on another host.
  const alternateHost = body.location === 'alternate' && (
    <AlternateHostSelect
      id={`${id}-host`}
      hosts={context.hosts}
      runningOn={[context.machine.activeHostId]}
      value={String(body.alternateHostId ?? '')}
      onChange={(alternateHostId) => set({ alternateHostId })}
    />
  );
  switch (operation) {
    case 'test-failover':
      return (
        <>
          <PointChoice context={context} body={body} set={set} />
          <div className="field">
            <label htmlFor={`${id}-network`}>Test network</label>
            <input
              id={`${id}-network`}
              list={`${id}-networks`}
              value={String(body.network ?? '')}
              onChange={(e) => set({ network: e.target.value })}
              aria-describedby={`${id}-network-hint`}
            />
            <datalist id={`${id}-networks`}>
              {context.sites.flatMap((s) =>
                s.testNetwork ? [<option key={s.id} value={s.testNetwork} />] : [],
              )}
            </datalist>
            <p id={`${id}-network-hint`} className="hint">
              An isolated network at the recovery site, so the copy cannot reach production. Empty: the site's
              test network.
            </p>
          </div>
        </>
      );
    case 'failover':
      return (
        <>
          <p className="warning" role="note">
            Once started, a failover cannot be cancelled: a failover stopped half-way would leave the machine
            unreplicated.
          </p>
          <PointChoice context={context} body={body} set={set} />
          <Check
            id={`${id}-shutdown`}
            label="Shut down machine before failover"
            hint="Recommended when the source is still running. Failover continues even when the shutdown fails."
            checked={body.shutdownSource === true}
            onChange={(v) => set({ shutdownSource: v })}
          />
        </>
      );
    case 'planned-failover':
      return (
        <div className="field">
          <label htmlFor={`${id}-force-off`}>Force off after (seconds)</label>
          <input
            id={`${id}-force-off`}
            inputMode="numeric"
            value={String(body.forceOffAfterSeconds ?? '')}
            onChange={(e) => set({ forceOffAfterSeconds: e.target.value })}
            aria-describedby={`${id}-force-off-hint`}
          />
          <p id={`${id}-force-off-hint`} className="hint">
            Empty: wait up to 90 s for the guest to power down, then stop. A number: power the machine off
            after that many seconds if its guest ignores the ACPI power-down request (e.g. 60).
          </p>
        </div>
      );
    case 'change-recovery-point':
      return <PointChoice context={context} body={body} set={set} />;
    case 'cleanup-test-failover':
      return (
        <div className="field">
          <label htmlFor={`${id}-notes`}>Notes</label>
          <textarea
            id={`${id}-notes`}
            rows={5}
            value={String(body.notes ?? '')}
            onChange={(e) => set({ notes: e.target.value })}
            placeholder="What the drill showed, what to fix…"
          />
          <p className="hint">Recorded with the cleanup job as the drill's notes.</p>
        </div>
      );
    case 'commit':
      return <p className="warning">The other recovery points of this machine are deleted.</p>;
    case 'reprotect':
      return (
        <>
          <Radios
            legend="Replicate to"
            name={`${id}-location`}
            value={String(body.location)}
            onChange={(v) => set({ location: v })}
            options={[
              {
                value: 'original',
                title: 'Original location',
                hint: 'The original machine: only the blocks that differ are sent. Disks with snapshots are refused.',
              },
              {
                value: 'alternate',
                title: 'Alternate location',
                hint: 'A new machine is created on another host.',
              },
            ]}
          />
          {alternateHost}
          <Check
            id={`${id}-full`}
            label="Full resynchronisation"
            hint="Compare every block instead of trusting the change records. Slower."
            checked={body.fullResync === true}
            onChange={(v) => set({ fullResync: v })}
          />
        </>
      );
    case 'failback':
      return (
        <>
          <Radios
            legend="Data synchronisation"
            name={`${id}-sync`}
            value={String(body.dataSync)}
            onChange={(v) => set({ dataSync: v })}
            options={[
              {
                value: 'before-failover',
                title: 'Synchronise before failover (deltas only)',
                hint: 'Copies the differences while the recovery machine keeps running; then Complete failover shuts it down, sends the last changes and starts the primary. Minimal downtime.',
              },
              {
                value: 'full-download',
                title: 'Synchronise during failover only (full download)',
                hint: 'Shuts down and copies the whole disk: for machines that ran at the recovery site a long time, or whose primary disk is gone.',
              },
            ]}
          />
          <Radios
            legend="Fail back to"
            name={`${id}-location`}
            value={String(body.location)}
            onChange={(v) => set({ location: v })}
            options={[
              {
                value: 'original',
                title: 'Original machine',
                hint: context.machine.originalExists
                  ? 'The machine the workload came from.'
                  : 'The original machine is no longer known to the vault: choose an alternate location.',
                disabled: !context.machine.originalExists,
              },
              { value: 'alternate', title: 'Alternate location', hint: 'A new machine on another host.' },
            ]}
          />
          {alternateHost}
        </>
      );
    case 'enable-replication':
      return (
        <>
          <div className="field">
            <label htmlFor={`${id}-rhost`}>Recovery host</label>
            <select
              id={`${id}-rhost`}
              value={String(body.recoveryHostId)}
              onChange={(e) => set({ recoveryHostId: e.target.value })}
            >
              {context.hosts
                .filter((h) => h.id !== context.machine.activeHostId)
                .map((h) => (
                  <option key={h.id} value={h.id}>
                    {h.name} ({h.status})
                  </option>
                ))}
            </select>
          </div>
          <div className="field">
            <label htmlFor={`${id}-policy`}>Policy</label>
            <select
              id={`${id}-policy`}
              value={String(body.policyId)}
              onChange={(e) => set({ policyId: e.target.value })}
            >
              {context.policies.map((p) => (
                <option key={p.id} value={p.id}>
                  {p.name} (RPO {Math.round(p.rpoThresholdSeconds / 60)} min)
                </option>
              ))}
            </select>
          </div>
        </>
      );
    case 'resync':
      return (
        <Check
          id={`${id}-full`}
          label="Full resynchronisation"
          hint="Compare every block (slow); otherwise only the blocks known to differ are sent."
          checked={body.full === true}
          onChange={(v) => set({ full: v })}
        />
      );
    default:
      return null;
  }
}

function PointChoice({
  context,
  body,
  set,
}: {
  context: OperationContext;
  body: Record<string, unknown>;
  set: (patch: Record<string, unknown>) => void;
}) {
  const id = useId();
  const choice = body.recoveryPoint as { option: RecoveryPointOption; pointId?: string };
  const grouped = context.machine.groupId !== null;
  const newest = [...context.points].sort(newestFirst)[0];
  return (
    <>
      <Radios
        legend="Recovery point"
        name={`${id}-option`}
        value={choice.option}
        onChange={(v) =>
          set({
            recoveryPoint:
              v === 'custom'
                ? { option: v, pointId: choice.pointId ?? context.selectedPointId ?? newest?.id }
                : { option: v },
          })
        }
        options={POINT_OPTIONS.map((o) => ({
          value: o.value,
          title: o.title,
          hint: o.group && !grouped ? `${o.tradeOff} (This machine is in no consistency group.)` : o.tradeOff,
          disabled: o.group === true && !grouped,
        }))}
      />
      {choice.option === 'custom' && (
        <PointPicker
          points={context.points}
          value={choice.pointId}
          onChange={(pointId) => set({ recoveryPoint: { option: 'custom', pointId } })}
        />
      )}
    </>
  );
}

function Radios({
  legend,
  name,
  value,
  onChange,
  options,
}: {
  legend: string;
  name: string;
  value: string;
  onChange: (value: string) => void;
  options: { value: string; title: string; hint: ReactNode; disabled?: boolean }[];
}) {
  return (
    <fieldset className="radios">
      <legend>{legend}</legend>
      {options.map((o) => (
        <label key={o.value} className={o.disabled ? 'disabled' : undefined}>
          <input
            type="radio"
            name={name}
            value={o.value}
            checked={value === o.value}
            disabled={o.disabled}
            onChange={() => onChange(o.value)}
          />
          <span>
            <strong>{o.title}</strong>
            <span className="hint">{o.hint}</span>
          </span>
        </label>
      ))}
    </fieldset>
  );
}

function Check({
  id,
  label,
  hint,
  checked,
  onChange,
}: {
  id: string;
  label: string;
  hint: string;
  checked: boolean;
  onChange: (value: boolean) => void;
}) {
  return (
    <div className="check">
      <input id={id} type="checkbox" checked={checked} onChange={(e) => onChange(e.target.checked)} />
      <label htmlFor={id}>
        {label}
        <span className="hint">{hint}</span>
      </label>
    </div>
  );
}
