import type { DrillRun } from '../../domain/drill.ts';
import type { LifecycleOperation } from '../../domain/index.ts';
import type { Machine } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { VaultContext } from '../vault-context.ts';

/**
 * Drills live beside a machine's other operations: they never hold up a
 * failover or the end of protection (those cancel the drill and go on while
 * it cleans up), and a manual test failover waits until the drill is over.
 */

/** Operations that take the machine away from its replica: a running drill of it is cancelled, not waited for. */
const CANCELS_DRILLS: ReadonlyMap<LifecycleOperation, string> = new Map([
  ['failover', 'a failover of the machine began'],
  ['planned-failover', 'a planned failover of the machine began'],
  ['disable-replication', 'replication of the machine is being disabled'],
]);

/** The machine's drills that run now (a machine drill, or its part of a plan drill). */
export function runningDrillsOf(vault: VaultContext, machineId: string): Promise<DrillRun[]> {
  return vault.store.drillRuns.list({ machineId, states: ['running'] });
}

/** Refuses an operation that cannot share the machine with its running drill, naming the drill and how to end it. */
export async function refuseDuringDrill(
  vault: VaultContext,
  machine: Machine,
  operation: LifecycleOperation,
): Promise<void> {
  if (operation !== 'test-failover') return;
  const [drill] = await runningDrillsOf(vault, machine.id);
  if (!drill) return;
  const cancel = drill.jobId === null ? '' : `, or cancel it: haven jobs cancel ${drill.jobId}`;
  throw new HavenError(
    'conflict',
    `Machine '${machine.name}' (${machine.state}) is in drill ${drill.id.slice(0, 8)}, running since ${drill.startedAt ?? drill.createdAt}: a test failover can start when the drill ends${cancel}`,
    {
      machineId: machine.id,
      machineName: machine.name,
      state: machine.state,
      operation,
      drillId: drill.id,
      jobId: drill.jobId,
    },
  );
}

/**
 * Cancels the machine's running drills when the operation takes the machine
 * away from its replica, recording why on each run first. Does not wait for
 * their clean-up: the drill's own machine and overlay are apart from what the
 * operation uses, and its job removes them.
 */
export async function cancelDrillsFor(
  vault: VaultContext,
  machine: Machine,
  operation: LifecycleOperation,
): Promise<DrillRun[]> {
  const why = CANCELS_DRILLS.get(operation);
  if (why === undefined) return [];
  const drills = await runningDrillsOf(vault, machine.id);
  for (const drill of drills) await cancelDrill(vault, drill, `cancelled: ${why}`);
  return drills;
}

/**
 * Records why a running drill ends early, then cancels its job; the job's
 * settle cleans up and keeps this reason. A job that already ended is left
 * to the scheduler's clean-up.
 */
export async function cancelDrill(vault: VaultContext, drill: DrillRun, reason: string): Promise<void> {
  const current = await vault.store.drillRuns.get(drill.id);
  if (current?.state !== 'running') return;
  await vault.store.drillRuns.update({ ...current, reason });
  if (current.jobId === null) return;
  await vault.engine.cancel(current.jobId).catch((error: unknown) => {
    // Already over: nothing left to stop; the settle (or the scheduler) records the end.
    if (!(error instanceof HavenError && (error.code === 'conflict' || error.code === 'not_found')))
      throw error;
  });
}
