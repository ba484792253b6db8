import type { Machine, MachineState } from '../domain/model.ts';
import { HavenError } from '../errors/index.ts';

/** States in which reverse replication runs: the replica is back at the primary site. */
const REVERSE: ReadonlySet<MachineState> = new Set([
  'reverse-protected',
  'synchronizing-failback',
  'failback-ready',
  'completing-failover',
  'failing-back',
]);

/**
 * The host whose replica store holds a machine's recovery points. While the
 * machine is protected it is the recovery host. After a failover the machine
 * runs from a view of that replica, so the replica stays there; reprotect
 * builds the reverse replica at the primary host.
 */
export function replicaHostOf(machine: Machine): string | null {
  if (REVERSE.has(machine.state) || (machine.state === 'resynchronizing' && machine.runtime.failover)) {
    return machine.primaryHostId;
  }
  if (machine.runtime.failover) return machine.runtime.failover.hostId;
  return machine.activeHostId === machine.primaryHostId ? machine.recoveryHostId : machine.primaryHostId;
}

export function requireReplicaHost(machine: Machine): string {
  const host = replicaHostOf(machine);
  if (!host)
    throw new HavenError('conflict', `machine '${machine.name}' has no replica`, { machineId: machine.id });
  return host;
}
