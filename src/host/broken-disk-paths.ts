/**
 * Which disks a host was asked to serve (the host state file) it does not
 * serve as a running machine needs: the export is not attached, or its write
 * journal accepts no more writes. What the vault hears in a machine's
 * replication status, so such a machine is never shown healthy.
 */
import type { DiskService } from '../disk/index.ts';
import { exportNameOf } from './host-disk-service.ts';
import type { BrokenDiskPath } from './host-services.ts';
import type { SavedDisk } from './host-state-file.ts';

export function brokenDiskPaths(
  machineId: string,
  saved: readonly SavedDisk[],
  service: DiskService,
  /** Why an export could not be attached again after a restart, by export name. */
  notAttached: ReadonlyMap<string, string>,
): BrokenDiskPath[] {
  const attached = new Set(service.list().map((e) => e.name));
  return saved
    .filter((d) => d.machineId === machineId)
    .flatMap((d): BrokenDiskPath[] => {
      const name = exportNameOf(d);
      if (!attached.has(name)) {
        const why = notAttached.get(name) ?? 'it was detached behind the vault';
        return [{ diskId: d.diskId, problem: `the disk service does not serve export '${name}': ${why}` }];
      }
      const failure = service.journal(name).failure;
      if (failure !== null) {
        return [
          {
            diskId: d.diskId,
            problem: `the write journal of export '${name}' accepts no writes: ${failure}`,
          },
        ];
      }
      return [];
    });
}
