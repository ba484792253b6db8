/**
 * The lifecycle of a protected machine (SPEC §2) as one table of transitions.
 *
 * Each row says: `operation` may start when the machine is in `from`; while
 * its job runs the machine shows `via`; when the job succeeds it lands in `to`.
 *
 * On job failure the machine returns to `from`. Every job's steps are
 * retry-safe (each checks what is already done before acting), so the
 * operator recovers by running the same operation again; there is no
 * "failed" state to clean up by hand. Rows with `pointOfNoReturn` have a step
 * after which the job cannot be cancelled: a failover cancelled half-way
 * would leave the machine unreplicated (SPEC §2), so the engine refuses the
 * cancel past that step and finishes (or fails, and the operation is re-run).
 */
import { HavenError } from '../errors/index.ts';
import {
  IN_PROGRESS_STATES,
  type InProgressState,
  type MachineState,
  STABLE_STATES,
  type StableState,
} from './model.ts';

export type LifecycleOperation =
  | 'enable-replication'
  | 'disable-replication'
  | 'test-failover'
  | 'cleanup-test-failover'
  | 'failover'
  | 'planned-failover'
  | 'failback'
  | 'complete-failover'
  | 'change-recovery-point'
  | 'commit'
  | 'reprotect'
  | 'resync';

/** Failback's data-synchronisation option (SPEC §2 step 7). */
export type DataSync = 'before-failover' | 'full-download';

export type { InProgressState, StableState };

export interface TransitionOptions {
  dataSync?: DataSync;
}

export interface Transition {
  operation: LifecycleOperation;
  from: StableState;
  via: InProgressState;
  to: StableState;
  pointOfNoReturn: boolean;
  /** The row applies only when the operation's options match (failback's two variants). */
  when?: { dataSync: DataSync };
  description: string;
}

/** Which site the machine's workload runs at. */
export type RunningSite = 'primary' | 'recovery' | 'none';

export const ALL_OPERATIONS: readonly LifecycleOperation[] = [
  'enable-replication',
  'disable-replication',
  'test-failover',
  'cleanup-test-failover',
  'failover',
  'planned-failover',
  'failback',
  'complete-failover',
  'change-recovery-point',
  'commit',
  'reprotect',
  'resync',
];

export { IN_PROGRESS_STATES, STABLE_STATES };

export const LIFECYCLE: readonly Transition[] = [
  {
    operation: 'enable-replication',
    from: 'unprotected',
    via: 'enabling-replication',
    to: 'protected',
    pointOfNoReturn: false,
    description: 'Copy every disk to the recovery host, then replicate changes only.',
  },
  ...(['protected', 'reverse-protected', 'failover-committed', 'failback-committed'] as const).map(
    (from): Transition => ({
      operation: 'disable-replication',
      from,
      via: 'disabling-replication',
      to: 'unprotected',
      pointOfNoReturn: false,
      description: 'Stop replicating and drop the replica; the machine keeps running where it is.',
    }),
  ),
  {
    operation: 'test-failover',
    from: 'protected',
    via: 'starting-test-failover',
    to: 'test-failover-active',
    pointOfNoReturn: false,
    description: 'Start a copy at the recovery site on the isolated test network; production is untouched.',
  },
  {
    operation: 'cleanup-test-failover',
    from: 'test-failover-active',
    via: 'cleaning-up-test-failover',
    to: 'protected',
    pointOfNoReturn: false,
    description: "Remove the test copy and record the drill's notes.",
  },
  {
    operation: 'failover',
    from: 'protected',
    via: 'failing-over',
    to: 'failed-over',
    pointOfNoReturn: true,
    description: 'Unplanned failover: start the machine at the recovery site from a chosen point.',
  },
  {
    operation: 'failover',
    from: 'reverse-protected',
    via: 'failing-back',
    to: 'failed-back',
    pointOfNoReturn: true,
    description: 'Unplanned failback: start the machine at the primary site from a chosen point.',
  },
  {
    operation: 'planned-failover',
    from: 'protected',
    via: 'failing-over',
    to: 'failed-over',
    pointOfNoReturn: true,
    description:
      'Shut the source down, send all unsynchronised data, start at the recovery site. No data loss.',
  },
  {
    operation: 'failback',
    from: 'reverse-protected',
    via: 'synchronizing-failback',
    to: 'failback-ready',
    pointOfNoReturn: false,
    when: { dataSync: 'before-failover' },
    description: 'Copy the differences to the primary while the recovery machine keeps running.',
  },
  {
    operation: 'failback',
    from: 'reverse-protected',
    via: 'failing-back',
    to: 'failed-back',
    pointOfNoReturn: true,
    when: { dataSync: 'full-download' },
    description: 'Shut the recovery machine down, copy whole disks to the primary, start it there.',
  },
  {
    operation: 'complete-failover',
    from: 'failback-ready',
    via: 'completing-failover',
    to: 'failed-back',
    pointOfNoReturn: true,
    description: 'Shut the recovery machine down, send the last changes, start the primary machine.',
  },
  {
    operation: 'change-recovery-point',
    from: 'failed-over',
    via: 'changing-recovery-point',
    to: 'failed-over',
    pointOfNoReturn: false,
    description: 'Restart the recovery-site machine from another recovery point.',
  },
  {
    operation: 'change-recovery-point',
    from: 'failed-back',
    via: 'changing-recovery-point',
    to: 'failed-back',
    pointOfNoReturn: false,
    description: 'Restart the primary-site machine from another recovery point.',
  },
  {
    operation: 'commit',
    from: 'failed-over',
    via: 'committing',
    to: 'failover-committed',
    pointOfNoReturn: false,
    description: 'Complete the failover and delete the other recovery points.',
  },
  {
    operation: 'commit',
    from: 'failed-back',
    via: 'committing',
    to: 'failback-committed',
    pointOfNoReturn: false,
    description: 'Complete the failback and delete the other recovery points.',
  },
  {
    operation: 'reprotect',
    from: 'failover-committed',
    via: 'reprotecting',
    to: 'reverse-protected',
    pointOfNoReturn: false,
    description: 'Replicate the recovery-site machine back to the primary (only differing blocks).',
  },
  {
    operation: 'reprotect',
    from: 'failback-committed',
    via: 'reprotecting',
    to: 'protected',
    pointOfNoReturn: false,
    description: 'Replicate the primary machine to the recovery site again (only what changed).',
  },
  {
    operation: 'resync',
    from: 'protected',
    via: 'resynchronizing',
    to: 'protected',
    pointOfNoReturn: false,
    description: 'Compare and resend the blocks that diverged between the machine and its replica.',
  },
  {
    operation: 'resync',
    from: 'reverse-protected',
    via: 'resynchronizing',
    to: 'reverse-protected',
    pointOfNoReturn: false,
    description: 'Compare and resend the blocks that diverged between the machine and its replica.',
  },
];

/**
 * Where the workload runs in each stable state. An unprotected machine runs at
 * its primary: disabling replication at the recovery site makes that site the
 * machine's new home (the job sets primaryHostId to the active host).
 */
const SITE_OF: Record<StableState, RunningSite> = {
  unprotected: 'primary',
  protected: 'primary',
  'test-failover-active': 'primary',
  'failed-over': 'recovery',
  'failover-committed': 'recovery',
  'reverse-protected': 'recovery',
  'failback-ready': 'recovery',
  'failed-back': 'primary',
  'failback-committed': 'primary',
};

const STABLE = new Set<MachineState>(STABLE_STATES);

export function isInProgress(state: MachineState): state is InProgressState {
  return !STABLE.has(state);
}

/** States in which a machine's disks are being replicated (the monitor watches these). */
const REPLICATING: ReadonlySet<MachineState> = new Set([
  // The initial copy's progress shows on the machine while it runs.
  'enabling-replication',
  'protected',
  'reverse-protected',
  'test-failover-active',
  'starting-test-failover',
  'cleaning-up-test-failover',
  'resynchronizing',
]);

export function isReplicating(state: MachineState): boolean {
  return REPLICATING.has(state);
}

/** Operations that may start in `state`, in ALL_OPERATIONS order; none while a job runs. */
export function allowedOperations(state: MachineState): LifecycleOperation[] {
  const here = new Set(LIFECYCLE.filter((t) => t.from === state).map((t) => t.operation));
  return ALL_OPERATIONS.filter((op) => here.has(op));
}

export interface MachineRef {
  id: string;
  name: string;
  state: MachineState;
}

/**
 * The transition `operation` takes `machine` through, or a HavenError saying
 * why it cannot start: 'operation_not_allowed' (wrong state, or a job is
 * running) or 'bad_request' (failback without a valid dataSync option).
 */
export function planTransition(
  machine: MachineRef,
  operation: LifecycleOperation,
  options: TransitionOptions = {},
): Transition {
  const { id, name, state } = machine;
  const allowed = allowedOperations(state);
  const details = { machineId: id, machineName: name, state, operation, allowedOperations: allowed };
  const rows = LIFECYCLE.filter((t) => t.operation === operation && t.from === state);
  if (rows.length === 0) {
    const why = isInProgress(state)
      ? `a job is running on it; ${operation} and every other operation wait until it finishes`
      : `${operation} is not allowed there; allowed: ${allowed.join(', ') || 'none'}`;
    throw new HavenError('operation_not_allowed', `Machine '${name}' is ${state}: ${why}`, details);
  }
  const variants = rows.filter((t) => t.when !== undefined);
  if (variants.length === 0) return rows[0]!;
  const match = variants.find((t) => t.when!.dataSync === options.dataSync);
  if (match === undefined) {
    const choices = variants.map((t) => t.when!.dataSync);
    throw new HavenError(
      'bad_request',
      `${operation} of machine '${name}' needs option dataSync, one of: ${choices.join(', ')} (got ${String(options.dataSync)})`,
      { ...details, option: 'dataSync', choices },
    );
  }
  return match;
}

/** The state a machine returns to when the transition's job fails (see the header). */
export function failureState(transition: Transition): StableState {
  return transition.from;
}

/**
 * Which site the workload runs at. For an in-progress state the answer can
 * depend on where the job started (e.g. 'committing' from failed-over or
 * failed-back); pass `from` then. While a job moves the machine between sites
 * (failing over or back) it runs at neither: 'none'.
 */
export function where(state: MachineState, from?: StableState): RunningSite {
  if (!isInProgress(state)) return SITE_OF[state];
  const rows = LIFECYCLE.filter((t) => t.via === state && (from === undefined || t.from === from));
  const sites = new Set(rows.map(siteDuring));
  if (sites.size === 1) return [...sites][0]!;
  const origins = LIFECYCLE.filter((t) => t.via === state).map((t) => t.from);
  throw new HavenError(
    'bad_request',
    from === undefined
      ? `state ${state} is reached from ${[...new Set(origins)].join(', ')}: pass the state the job started from`
      : `state ${state} is not reached from ${from}; it is reached from ${[...new Set(origins)].join(', ')}`,
    { state, from: from ?? null, origins },
  );
}

/** Disabling replication leaves the machine where it runs (see SITE_OF); other site changes move it. */
function siteDuring(t: Transition): RunningSite {
  const moves = t.operation !== 'disable-replication' && SITE_OF[t.from] !== SITE_OF[t.to];
  return moves ? 'none' : SITE_OF[t.from];
}
