/**
 * The host's `disk` operations with every attachment saved in the host state
 * file, so a restarted agent attaches the same disks again.
 */
import { rm, stat } from 'node:fs/promises';
import { HavenError } from '../errors/index.ts';
import { exportNameOf, journalDirOf, serverLegImageOf } from './host-disk-service.ts';
import type { DiskService } from './host-services.ts';
import type { HostStateFile, SavedDisk } from './host-state-file.ts';

/**
 * Serves the saved disks again after a restart, first thing: their machines'
 * QEMUs are reconnecting to the socket. A disk whose image is gone is not
 * made afresh (that would hand the guest an empty disk), and a disk that
 * cannot be attached does not keep the others from being served: it is
 * reported (export name → why) and the machine shows a broken disk path.
 */
export async function restoreSavedDisks(
  disk: DiskService,
  saved: readonly SavedDisk[],
): Promise<Map<string, string>> {
  const failed = new Map<string, string>();
  for (const d of saved) {
    try {
      await stat(d.source).catch((error: NodeJS.ErrnoException) => {
        throw new HavenError('not_found', `its image '${d.source}' cannot be opened (${error.code})`, {
          kind: 'image',
          id: d.source,
        });
      });
      await disk.attach(d);
    } catch (error) {
      failed.set(exportNameOf(d), error instanceof Error ? error.message : String(error));
    }
  }
  return failed;
}

export function savedDiskService(disk: DiskService, state: HostStateFile, dataDir: string): DiskService {
  return {
    ...disk,
    attach: async (params) => {
      const { resetJournal, ...ref } = params;
      const existing = (await disk.list({ machineId: ref.machineId })).find((d) => d.diskId === ref.diskId);
      if (existing !== undefined) {
        if (existing.source !== ref.source) {
          throw new HavenError(
            'conflict',
            `disk '${ref.diskId}' of machine '${ref.machineId}' is attached with image '${existing.source}', not '${ref.source}'; detach it first`,
            { source: existing.source },
          );
        }
        return existing;
      }
      if (resetJournal) {
        // A fresh journal must not come with an image made from nothing (a server leg's: its staging image).
        const image = ref.serverLeg === true ? serverLegImageOf(dataDir, ref) : ref.source;
        await stat(image).catch(() => {
          throw new HavenError(
            'not_found',
            `disk image '${image}' does not exist: consolidate the machine's replica before attaching it`,
            { kind: 'image', id: image },
          );
        });
        await rm(journalDirOf(dataDir, ref), { recursive: true, force: true });
      }
      const result = await disk.attach(ref);
      await state.addDisk(ref);
      return result;
    },
    detach: async (params) => {
      await disk.detach(params);
      await state.removeDisk(params);
    },
  };
}
