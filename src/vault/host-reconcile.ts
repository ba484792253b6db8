import { isInProgress } from '../domain/index.ts';
import type { Machine } from '../domain/model.ts';
import { HavenError } from '../errors/index.ts';
import { hostServices } from './host-call.ts';
import type { VaultContext } from './vault-context.ts';

/**
 * Whether `hostId` may be sending `machine`'s disks. A machine with a job
 * running is the job's to decide; otherwise only a machine with a recovery
 * host replicates, and only from the host where it runs. Generous on purpose:
 * reconciliation stops only what the vault certainly does not want.
 */
export function mayReplicateFrom(machine: Machine, hostId: string): boolean {
  if (machine.currentJobId !== null || isInProgress(machine.state)) return true;
  return machine.recoveryHostId !== null && machine.activeHostId === hostId;
}

/**
 * Tells a host that has just (re)connected which machines it may replicate;
 * the host stops the rest. A job that failed while the host was away (its
 * cleanup could not reach the host) leaves no replication the vault does not
 * show. The vault decides, the host obeys: the host never guesses.
 */
export async function reconcileHost(vault: VaultContext, hostId: string): Promise<string[]> {
  const machines = await vault.store.machines.list();
  const machineIds = machines.filter((m) => mayReplicateFrom(m, hostId)).map((m) => m.id);
  try {
    const { stopped } = await hostServices(vault, hostId).replication.reconcile({ machineIds });
    return stopped;
  } catch (error) {
    // A host without a replication service sends nothing to stop.
    if (error instanceof HavenError && error.code === 'not_available') return [];
    throw error;
  }
}
