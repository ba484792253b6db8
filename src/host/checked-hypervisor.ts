/**
 * The hypervisor as the host agent serves it: whatever the driver, the
 * kernel and initrd of a direct kernel boot must be inside the host's storage
 * folders, symbolic links resolved, before the driver is handed them. The
 * driver (often root) has them read into the guest's memory, so a path the
 * vault let through as text (a link inside a storage folder to /etc/shadow)
 * would otherwise let an operator read any file of the host. The local image
 * a disk moves to is held to the storage folders the same way.
 */
import { HavenError } from '../errors/index.ts';
import type { Hypervisor, MachineDefinition } from '../hypervisor/hypervisor.ts';
import { HOST_OPERATIONS } from './host-services.ts';
import { checkBootOnHost, checkSourceOnHost } from './storage-folders.ts';

/** A driver that keeps its definitions (the QEMU driver) lets the host check them again at start. */
interface DefinitionReader {
  definition(name: string): Promise<Pick<MachineDefinition, 'boot'> | undefined>;
}

function readsDefinitions(hypervisor: Hypervisor): hypervisor is Hypervisor & DefinitionReader {
  return typeof (hypervisor as Partial<DefinitionReader>).definition === 'function';
}

async function checkBoot(
  machine: string,
  boot: MachineDefinition['boot'],
  folders: readonly string[],
): Promise<void> {
  try {
    await checkBootOnHost('boot', boot, folders);
  } catch (error) {
    if (!(error instanceof HavenError)) throw error;
    throw new HavenError(error.code, `machine '${machine}': ${error.message}`, {
      ...error.details,
      machine,
    });
  }
}

export function checkedHypervisor(hypervisor: Hypervisor, storageFolders: readonly string[]): Hypervisor {
  const served = Object.fromEntries(
    HOST_OPERATIONS.hypervisor.map((operation) => [
      operation,
      (hypervisor[operation] as (...args: unknown[]) => unknown).bind(hypervisor),
    ]),
  ) as unknown as Hypervisor;
  return {
    ...served,
    define: async (params) => {
      await checkBoot(params.machine.name, params.machine.boot, storageFolders);
      return hypervisor.define(params);
    },
    // Again at start: the link may have been changed since, or the machine defined before this check.
    start: async (params) => {
      if (readsDefinitions(hypervisor)) {
        const defined = await hypervisor.definition(params.name);
        if (defined) await checkBoot(params.name, defined.boot, storageFolders);
      }
      return hypervisor.start(params);
    },
    // The driver (often root) creates the image: only inside a storage folder, links resolved.
    moveDiskToImage: async (params) => {
      await checkSourceOnHost('image', params.image, storageFolders);
      return hypervisor.moveDiskToImage(params);
    },
  };
}
