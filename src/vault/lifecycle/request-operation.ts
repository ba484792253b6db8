import { randomUUID } from 'node:crypto';
import { isoNow } from '../../clock/index.ts';
import { type LifecycleOperation, planTransition } from '../../domain/index.ts';
import type { Job, Machine } from '../../domain/model.ts';
import { HavenError, notFound } from '../../errors/index.ts';
import { cancelDrillsFor, refuseDuringDrill } from '../drills/drill-conflicts.ts';
import type { VaultContext } from '../vault-context.ts';
import { type OperationWithOptions, transitionOptions } from './operation-options.ts';

/**
 * What each operation's job needs from the data path. A vault whose job engine
 * has no job for an operation refuses it, naming what is missing, instead of
 * pretending to run it.
 */
const DATA_PATH: Record<LifecycleOperation, string> = {
  'enable-replication': 'initial replication (disk service and replica store)',
  'disable-replication': 'replication',
  'test-failover': 'point-in-time views and a hypervisor driver',
  'cleanup-test-failover': 'a hypervisor driver',
  failover: 'point-in-time views and a hypervisor driver',
  'planned-failover': 'the sender and a hypervisor driver',
  failback: 'reverse replication and a hypervisor driver',
  'complete-failover': 'reverse replication and a hypervisor driver',
  'change-recovery-point': 'point-in-time views and a hypervisor driver',
  commit: 'the replica store',
  reprotect: 'reverse replication',
  resync: 'a resync job',
};

export type OperationRequest = OperationWithOptions & {
  machineId: string;
  actor: string;
  /** Checks that need the vault's state (validation, limits); throw HavenError to refuse. */
  check?: (machine: Machine) => Promise<void>;
};

/**
 * Starts a lifecycle operation: refuses it unless the machine's state allows
 * it (409 naming the state and the allowed operations), runs the operation's
 * checks (a test failover waits for the machine's running drill), then moves
 * the machine into the in-progress state with a compare-and-set, cancels a
 * drill a failover or disabling would leave behind, and queues the job. The job's settle step moves it on.
 */
export async function requestOperation(vault: VaultContext, request: OperationRequest): Promise<Job> {
  const { store, engine } = vault;
  const machine = await store.machines.get(request.machineId);
  if (!machine) throw notFound('machine', request.machineId);
  const transition = planTransition(machine, request.operation, transitionOptions(request));
  await request.check?.(machine);
  await refuseDuringDrill(vault, machine, request.operation);
  if (!engine.has(request.operation)) {
    throw new HavenError(
      'not_available',
      `${request.operation} is not available yet: it needs ${DATA_PATH[request.operation]}, which this vault does not have. ` +
        `Machine '${machine.name}' is unchanged (${machine.state}).`,
      {
        machineId: machine.id,
        machineName: machine.name,
        state: machine.state,
        operation: request.operation,
      },
    );
  }
  const jobId = randomUUID();
  const moved = await store.machines.transition(
    machine.id,
    transition.from,
    transition.via,
    jobId,
    isoNow(vault.clock),
  );
  if (!moved) {
    const now = await store.machines.get(machine.id);
    throw new HavenError(
      'conflict',
      `Machine '${machine.name}' changed while ${request.operation} was being requested (now ${now?.state ?? 'deleted'}); try again`,
      {
        machineId: machine.id,
        machineName: machine.name,
        state: now?.state ?? null,
        operation: request.operation,
      },
    );
  }
  // The machine is now the operation's: a drill of it stops, and cleans up beside the operation's job.
  await cancelDrillsFor(vault, machine, request.operation);
  try {
    return await engine.submit({
      id: jobId,
      kind: request.operation,
      targetType: 'machine',
      targetId: machine.id,
      input: {
        ...request.options,
        ...(request.operation === 'enable-replication' && machine.importedFrom ? { liveMirror: true } : {}),
        ...(request.operation === 'enable-replication' && machine.server ? { serverLegs: true } : {}),
        ...((request.operation === 'failback' || request.operation === 'complete-failover') && machine.server
          ? { ontoServer: true }
          : {}),
        machineId: machine.id,
        transition,
      },
      createdBy: request.actor,
    });
  } catch (error) {
    await store.machines.transition(machine.id, transition.via, transition.from, null, isoNow(vault.clock));
    throw error;
  }
}
