import type { Machine } from '../domain/model.ts';
import { HavenError } from '../errors/index.ts';

/**
 * The host whose replica store holds a machine's recovery points. While the
 * machine is protected it is the host on the other side from where it runs;
 * after a failover the machine runs from its replica's view, so the replica
 * is where it runs now, until reprotect builds one on the other side.
 */
export function replicaHostOf(machine: Machine): string | null {
  if (machine.runtime.failover) return machine.runtime.failover.hostId;
  return machine.activeHostId === machine.primaryHostId ? machine.recoveryHostId : machine.primaryHostId;
}

export function requireReplicaHost(machine: Machine): string {
  const host = replicaHostOf(machine);
  if (!host)
    throw new HavenError('conflict', `machine '${machine.name}' has no replica`, { machineId: machine.id });
  return host;
}
