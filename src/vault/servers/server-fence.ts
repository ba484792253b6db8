import { bmcUrlOf } from '../../domain/index.ts';
import type { Machine } from '../../domain/model.ts';
import { hostServices } from '../host-call.ts';
import type { FenceOutcome } from '../jobs/verified-fence.ts';
import type { VaultContext } from '../vault-context.ts';
import { serverBmcOf } from './server-bmc.ts';

/**
 * Fencing a physical server: its primary host refuses the server's NBD legs
 * and its agent from now on and drops their connections, so the server can
 * no longer write into Haven's copy, and a server that comes back is told it
 * failed over. With a BMC, the server is then powered off hard through it
 * and fenced (verified) only when the BMC, asked again, reports it off; a
 * BMC that still reports it on keeps the copy from starting, as a hypervisor
 * would. Without one, whether it is powered off cannot be known, so this is
 * never a verified fence: the failover goes on and the machine, the job and
 * an alert say so until an operator has made sure it stays off.
 */
export async function fenceServer(
  vault: VaultContext,
  machine: Pick<Machine, 'id' | 'name' | 'server'>,
  hostId: string,
  why: string,
): Promise<FenceOutcome> {
  const host = (await vault.store.hosts.get(hostId))?.name ?? hostId;
  try {
    await hostServices(vault, hostId).servers.fence({ machineId: machine.id, reason: why });
  } catch (error) {
    return {
      fenced: false,
      state: 'unknown',
      reason: `fencing the legs of physical server '${machine.name}' at host '${host}' failed: ${messageOf(error)}`,
    };
  }
  const bmc = serverBmcOf(vault, machine, hostId);
  const refused = `host '${host}' refuses its NBD legs and its agent from now on (it cannot write into Haven’s copy)`;
  if (!bmc || !machine.server?.bmc) {
    return {
      fenced: false,
      state: 'unknown',
      reason: `physical server '${machine.name}' has no BMC: ${refused}, but whether it is powered off cannot be verified`,
    };
  }
  const where = `its BMC ${bmcUrlOf(machine.server.bmc)} through host '${host}'`;
  let power: Awaited<ReturnType<typeof bmc>>;
  try {
    power = await bmc('power-off');
  } catch (error) {
    return {
      fenced: false,
      state: 'unknown',
      reason: `${refused}, but powering physical server '${machine.name}' off through ${where} failed: ${messageOf(error)}`,
    };
  }
  if (power === 'off') return { fenced: true, state: 'shut-off' };
  return {
    fenced: false,
    state: 'running',
    reason: `${where} still reports physical server '${machine.name}' powered on after a hard power off`,
  };
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));
