import { bmcUrlOf } from '../../domain/index.ts';
import type { Machine } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { BmcAction, BmcPower } from '../../host/host-services.ts';
import { hostServices } from '../host-call.ts';
import type { VaultContext } from '../vault-context.ts';

/** One action on a server's BMC, through the host that reaches it; the power the BMC reports after it. */
export type ServerBmcCall = (action: BmcAction) => Promise<BmcPower>;

/**
 * The BMC of a server, called through `hostId` (the primary-site host reaches
 * it, not the vault), the password read from the vault's own table for each
 * call and handed to the host for that call only; null when the server has
 * no BMC. A BMC without a stored password is refused, naming the server.
 */
export function serverBmcOf(
  vault: VaultContext,
  machine: Pick<Machine, 'id' | 'name' | 'server'>,
  hostId: string,
): ServerBmcCall | null {
  const bmc = machine.server?.bmc;
  if (!bmc) return null;
  return async (action) => {
    const password = await vault.store.serverBmcPasswords.get(machine.id);
    if (password === undefined) {
      throw new HavenError(
        'conflict',
        `physical server '${machine.name}' has a BMC (${bmcUrlOf(bmc)}) but no password is stored for it; ` +
          `set it with 'haven servers update ${machine.name} --bmc ${bmcUrlOf(bmc)} --bmc-password-file FILE'`,
        { machineId: machine.id, machineName: machine.name },
      );
    }
    const { power } = await hostServices(vault, hostId).servers.bmc({ access: { ...bmc, password }, action });
    return power;
  };
}
