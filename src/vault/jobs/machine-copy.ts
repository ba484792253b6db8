import type { RunningCopy } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { MachineDefinition, MachineNic } from '../../host/host-services.ts';
import { copyIdentity } from './copy-identity.ts';
import type { LifecycleStepContext } from './lifecycle-job.ts';

/**
 * Starting and removing a copy of a machine at the replica's host (a test
 * failover's, a failover's, a drill's): the machine definition from its
 * recovery settings, with an identity of its own there.
 */

/** What starting a copy needs: the vault, the machine, and its hosts' services. */
export type CopyContext = Pick<LifecycleStepContext, 'vault' | 'machine' | 'host'>;

/** NICs at the other site: each network mapped (SPEC §5), static addresses carried over, never silently DHCP. */
async function recoveryNics(ctx: CopyContext, testNetwork: string | null): Promise<MachineNic[]> {
  const { store } = ctx.vault;
  const here = await store.hosts.get(ctx.machine.activeHostId);
  const site = here ? await store.sites.get(here.siteId) : undefined;
  return ctx.machine.recoverySettings.nics.map((nic) => ({
    network: testNetwork ?? nic.recoveryNetwork ?? site?.networkMapping[nic.network] ?? nic.network,
    mac: nic.mac,
    ...(testNetwork ? { isolated: true } : {}),
    ip: nic.ip,
  }));
}

/** The copy's machine at its host, from the recovery settings, with a name, UUID and MACs of its own there (copyIdentity). */
export async function copyDefinition(
  ctx: CopyContext,
  copy: Pick<RunningCopy, 'hostId' | 'disks' | 'vmName'>,
  testNetwork: string | null,
): Promise<MachineDefinition> {
  const settings = ctx.machine.recoverySettings;
  const identity = copyIdentity(
    ctx.machine.id,
    copy.vmName,
    await recoveryNics(ctx, testNetwork),
    await ctx.host(copy.hostId).hypervisor.inventory(),
  );
  return {
    name: identity.name,
    uuid: identity.uuid,
    cpus: settings.cpus,
    memoryMiB: settings.memoryMiB,
    disks: copy.disks,
    nics: identity.nics,
    ...(settings.boot ? { boot: settings.boot } : {}),
  };
}

/** Defines the copy's machine at its host when it is not, and starts it; safe to repeat. */
export async function defineAndStart(ctx: CopyContext, hostId: string, definition: MachineDefinition) {
  const { hypervisor } = ctx.host(hostId);
  const status = await hypervisor
    .status({ name: definition.name })
    .catch(() => ({ state: 'absent' as const }));
  if (status.state === 'absent') await hypervisor.define({ machine: definition });
  if (status.state !== 'running') await hypervisor.start({ name: definition.name });
}

/** Powers a copy off and drops its view (and the writes made on it). Safe to repeat. */
export async function removeCopy(
  ctx: Pick<LifecycleStepContext, 'host'>,
  copy: Pick<RunningCopy, 'hostId' | 'vmName' | 'viewId'>,
): Promise<void> {
  const services = ctx.host(copy.hostId);
  await services.hypervisor.fence({ name: copy.vmName });
  await services.hypervisor.undefine({ name: copy.vmName }).catch((e: unknown) => {
    if (!(e instanceof HavenError && e.code === 'not_found')) throw e;
  });
  await services.replica.closeView({ viewId: copy.viewId, discardWrites: true });
}
