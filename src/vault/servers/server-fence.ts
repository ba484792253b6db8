import type { Machine } from '../../domain/model.ts';
import type { FenceOutcome } from '../jobs/verified-fence.ts';
import type { VaultContext } from '../vault-context.ts';
import { serverLinkOf } from './server-link.ts';

/**
 * Fencing a physical server that has no BMC Haven can ask: its primary host
 * refuses the server's NBD legs and its agent from now on and drops their
 * connections, so the server can no longer write into Haven's copy, and a
 * server that comes back is told it failed over. Whether it is powered off
 * cannot be known, so this is never a verified fence: the failover goes on
 * and the machine, the job and an alert say so until an operator has made
 * sure it stays off.
 */
export async function fenceServer(
  vault: VaultContext,
  machine: Pick<Machine, 'id' | 'name'>,
  hostId: string,
  why: string,
): Promise<Extract<FenceOutcome, { state: 'unknown' }>> {
  const host = (await vault.store.hosts.get(hostId))?.name ?? hostId;
  try {
    await serverLinkOf(vault, hostId).fence({ machineId: machine.id, reason: why });
  } catch (error) {
    return {
      fenced: false,
      state: 'unknown',
      reason: `fencing the legs of physical server '${machine.name}' at host '${host}' failed: ${error instanceof Error ? error.message : String(error)}`,
    };
  }
  return {
    fenced: false,
    state: 'unknown',
    reason:
      `physical server '${machine.name}' has no BMC: host '${host}' refuses its NBD legs and its agent from now on ` +
      '(it cannot write into Haven’s copy), but whether it is powered off cannot be verified',
  };
}
