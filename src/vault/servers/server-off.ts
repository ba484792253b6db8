import { agentReporting } from '../../domain/index.ts';
import type { Machine, ServerLinkSnapshot } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import { hostServices } from '../host-call.ts';
import type { VaultContext } from '../vault-context.ts';

/**
 * Reprotect of a physical server adopts the staging images of its legs as
 * the base of the reverse replica: the server must be off as far as Haven
 * can see, no leg connected and no fresh report from its agent (a fenced
 * server's reports are refused, so it falls silent). Refused otherwise,
 * naming the server, what its host sees and what to do.
 */
export function refuseRunningServer(machine: Pick<Machine, 'id' | 'name'>, link: ServerLinkSnapshot): void {
  const connected = link.legs.filter((l) => l.connected).map((l) => l.diskId);
  const reporting = agentReporting(link);
  if (connected.length === 0 && !reporting) return;
  const seen = [
    ...(connected.length > 0
      ? [`its NBD leg${connected.length > 1 ? 's' : ''} ${connected.join(', ')} connected`]
      : []),
    ...(reporting ? [`its agent reporting (${link.state}${link.problem ? `: ${link.problem}` : ''})`] : []),
  ];
  throw new HavenError(
    'conflict',
    `physical server '${machine.name}' is not off at the primary site: its host sees ${seen.join(' and ')}. ` +
      'Reprotect writes the recovery site’s data into its legs’ staging images: power the server off ' +
      '(it must stay off until the failback boots it into Haven’s recovery environment), then reprotect again',
    { machineId: machine.id, machineName: machine.name, connectedLegs: connected, linkState: link.state },
  );
}

/** Asks the server's primary host what it sees of the server and refuses a server that is not off. */
export async function checkServerOff(vault: VaultContext, machine: Machine): Promise<void> {
  const link = await hostServices(vault, machine.primaryHostId).servers.status({ machineId: machine.id });
  refuseRunningServer(machine, link);
}
