import { type FormEvent, useId, useState } from 'react';
import type { Host, Job, Machine } from '../../../src/domain/model.ts';
import type { PlanOperation } from '../../../src/vault/plans/plan-steps.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { OPERATION_TEXT, POINT_OPTIONS, UNPLANNED_FAILBACK_TEXT } from '../operations.ts';
import { useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';
import { AlternateHostSelect, withAlternateHost } from './alternate-host-select.tsx';
import { Dialog } from './dialog.tsx';
import { DialogActions } from './dialog-actions.tsx';

type Body = Record<string, unknown>;

/** A plan takes one recovery point choice for all its machines: every option but a custom point. */
const PLAN_POINT_OPTIONS = POINT_OPTIONS.filter((o) => o.value !== 'custom');

function initialBody(operation: PlanOperation): Body {
  switch (operation) {
    case 'test-failover':
      return { recoveryPoint: { option: 'latest-processed' }, network: '' };
    case 'failover':
      return { recoveryPoint: { option: 'latest' }, shutdownSource: true };
    case 'cleanup-test-failover':
      return { notes: '' };
    case 'planned-failover':
      return { forceOffAfterSeconds: '' };
    case 'failback':
      return { dataSync: 'before-failover', location: 'original' };
    case 'reprotect':
      return { fullResync: false, location: 'original' };
    default:
      return {};
  }
}

/** The form's state as the API's schema wants it: empty optional fields left out. */
function cleanBody(operation: PlanOperation, body: Body): Body {
  if (operation === 'test-failover' && !body.network) return { recoveryPoint: body.recoveryPoint };
  if (operation === 'failback' || operation === 'reprotect') return withAlternateHost(body);
  if (operation === 'planned-failover') {
    const seconds = Number(body.forceOffAfterSeconds);
    return body.forceOffAfterSeconds !== '' && Number.isInteger(seconds)
      ? { forceOffAfterSeconds: seconds }
      : {};
  }
  return body;
}

/** One plan operation over all the plan's machines, group by group; on success the page shows its job. */
export function PlanOperationDialog({
  plan,
  operation,
  reverse,
  onStarted,
  onClose,
}: {
  plan: { id: string; name: string; groups: { machineIds: string[] }[] };
  operation: PlanOperation;
  /** The machines run at the recovery site, protected back to the primary: a failover goes home. */
  reverse: boolean;
  onStarted: (job: Job) => void;
  onClose: () => void;
}) {
  const { api } = useSession();
  const text = operation === 'failover' && reverse ? UNPLANNED_FAILBACK_TEXT : OPERATION_TEXT[operation];
  const [body, setBody] = useState<Body>(() => initialBody(operation));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const id = useId();
  const set = (patch: Body) => setBody((b) => ({ ...b, ...patch }));
  // Failback and reprotect can create the machines on another host: it is chosen among the hosts none of them runs on.
  const movable = operation === 'failback' || operation === 'reprotect';
  const hosts = useResource<{ hosts: Host[] }>(movable ? '/hosts' : null);
  const machines = useResource<{ machines: Machine[] }>(movable ? '/machines' : null);
  const members = new Set(plan.groups.flatMap((g) => g.machineIds));
  const runningOn = (machines.data?.machines ?? [])
    .filter((m) => members.has(m.id))
    .map((m) => m.activeHostId);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const job = await api.post<Job>(
        `/plans/${encodeURIComponent(plan.id)}/${operation}`,
        cleanBody(operation, body),
      );
      onStarted(job);
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  };

  const option = (body.recoveryPoint as { option: string } | undefined)?.option;
  return (
    <Dialog title={`${text.title}: plan ${plan.name}`} onClose={onClose}>
      <form onSubmit={submit} className="operation-form" data-operation={operation}>
        <p>{text.explain} The plan runs it for every machine, group by group, with the actions between.</p>
        {option !== undefined && (
          <fieldset className="radios">
            <legend>Recovery point (the same choice for every machine)</legend>
            {PLAN_POINT_OPTIONS.map((o) => (
              <label key={o.value}>
                <input
                  type="radio"
                  name={`${id}-point`}
                  checked={option === o.value}
                  onChange={() => set({ recoveryPoint: { option: o.value } })}
                />{' '}
                {o.title} <span className="hint">{o.tradeOff}</span>
              </label>
            ))}
          </fieldset>
        )}
        {operation === 'test-failover' && (
          <div className="field">
            <label htmlFor={`${id}-network`}>
              Test network <span className="hint">empty: the recovery site's test network</span>
            </label>
            <input
              id={`${id}-network`}
              value={String(body.network)}
              onChange={(e) => set({ network: e.target.value })}
            />
          </div>
        )}
        {operation === 'failover' && (
          <label className="check">
            <input
              type="checkbox"
              checked={body.shutdownSource === true}
              onChange={(e) => set({ shutdownSource: e.target.checked })}
            />{' '}
            {reverse
              ? 'Shut down the machines at the recovery site before failover'
              : 'Shut down machines before failover'}
          </label>
        )}
        {operation === 'cleanup-test-failover' && (
          <div className="field">
            <label htmlFor={`${id}-notes`}>Notes</label>
            <textarea
              id={`${id}-notes`}
              rows={3}
              value={String(body.notes)}
              onChange={(e) => set({ notes: e.target.value })}
            />
          </div>
        )}
        {operation === 'planned-failover' && (
          <div className="field">
            <label htmlFor={`${id}-force`}>
              Power off after (seconds) <span className="hint">a guest ignoring the shutdown request</span>
            </label>
            <input
              id={`${id}-force`}
              type="number"
              min={1}
              max={3600}
              value={String(body.forceOffAfterSeconds)}
              onChange={(e) => set({ forceOffAfterSeconds: e.target.value })}
            />
          </div>
        )}
        {operation === 'failback' && (
          <fieldset className="radios">
            <legend>Data synchronisation</legend>
            <label>
              <input
                type="radio"
                name={`${id}-sync`}
                checked={body.dataSync === 'before-failover'}
                onChange={() => set({ dataSync: 'before-failover' })}
              />{' '}
              Synchronise before failover{' '}
              <span className="hint">machines keep running; complete the failover afterwards</span>
            </label>
            <label>
              <input
                type="radio"
                name={`${id}-sync`}
                checked={body.dataSync === 'full-download'}
                onChange={() => set({ dataSync: 'full-download' })}
              />{' '}
              Full download <span className="hint">machines are shut down first</span>
            </label>
          </fieldset>
        )}
        {operation === 'reprotect' && (
          <label className="check">
            <input
              type="checkbox"
              checked={body.fullResync === true}
              onChange={(e) => set({ fullResync: e.target.checked })}
            />{' '}
            Full resynchronisation
          </label>
        )}
        {movable && (
          <fieldset className="radios">
            <legend>{operation === 'failback' ? 'Fail back to' : 'Replicate to'}</legend>
            <label>
              <input
                type="radio"
                name={`${id}-location`}
                checked={body.location === 'original'}
                onChange={() => set({ location: 'original' })}
              />{' '}
              Original location <span className="hint">the machines the workloads came from</span>
            </label>
            <label>
              <input
                type="radio"
                name={`${id}-location`}
                checked={body.location === 'alternate'}
                onChange={() => set({ location: 'alternate' })}
              />{' '}
              Alternate location{' '}
              <span className="hint">new machines on another host, all on the same one</span>
            </label>
          </fieldset>
        )}
        {movable && body.location === 'alternate' && (
          <AlternateHostSelect
            id={`${id}-host`}
            hosts={hosts.data?.hosts ?? []}
            runningOn={runningOn}
            value={String(body.alternateHostId ?? '')}
            onChange={(alternateHostId) => set({ alternateHostId })}
          />
        )}
        {(operation === 'failover' || operation === 'commit') && (
          <p className="warning">Once started, this cannot be cancelled.</p>
        )}
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
