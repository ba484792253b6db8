/**
 * The host agent's `disk` operations (src/host/host-services.ts) on top of a
 * DiskService: machines' disks become exports named `<machineId>.<diskId>`,
 * with their journals under the host's data directory.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { DiskExportInfo, DiskMarker, DiskService } from '../disk/disk-service.ts';
import { DISK_ID_PATTERN } from '../domain/index.ts';
import { HavenError } from '../errors/index.ts';
import { PRIVATE_DIR_MODE } from '../storage/private-files.ts';
import { createSparseImage } from '../storage/sparse-image.ts';
import type {
  DiskExport,
  DiskRef,
  DiskService as HostDiskService,
  JournalStatus as HostJournalStatus,
  WriteHold,
} from './host-services.ts';
import { MAX_WRITE_HOLD_MS } from './host-services.ts';
import { describeWriters, hasWriters, type ImageWriters, imageWriters } from './image-writers.ts';

export interface HostDiskServiceOptions {
  /** Journals go to `<dataDir>/journals/<machineId>/<diskId>`. */
  dataDir: string;
  journalCapacityBytes?: number;
}

const ID = DISK_ID_PATTERN;

/** The disk service's export of a machine's disk. */
export const exportNameOf = (ref: DiskRef): string => `${ref.machineId}.${ref.diskId}`;

/** Where a physical server's md leg is staged on its primary host. */
export const serverLegImageOf = (dataDir: string, ref: DiskRef): string =>
  join(dataDir, 'servers', ref.machineId, `${ref.diskId}.img`);

/** Where a machine's disk keeps its write journal. */
export const journalDirOf = (dataDir: string, ref: DiskRef): string =>
  join(dataDir, 'journals', ref.machineId, ref.diskId);

function exportName(ref: DiskRef): string {
  for (const [field, value] of [
    ['machineId', ref.machineId],
    ['diskId', ref.diskId],
  ] as const) {
    if (typeof value !== 'string' || !ID.test(value)) {
      throw new HavenError(
        'validation_failed',
        `${field} '${String(value).slice(0, 64)}' may only hold letters, digits, '_' and '-' (1 to 60)`,
        { field },
      );
    }
  }
  return exportNameOf(ref);
}

/** The image's writers other than this host agent; none when it does not exist yet. */
async function writersOf(source: string): Promise<ImageWriters> {
  try {
    await stat(source);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { writers: [], qemuWriteLock: false };
    throw e;
  }
  return imageWriters(source);
}

/**
 * Haven replicates only what the disk service sees: an image that another
 * process writes would give a replica that silently diverges.
 */
async function refuseForeignWriters(ref: DiskRef, source: string): Promise<void> {
  const found = await writersOf(source);
  if (!hasWriters(found)) return;
  throw new HavenError(
    'conflict',
    `disk ${ref.diskId} of machine ${ref.machineId}: its image '${source}' is open for writing by ${describeWriters(found)}; Haven cannot see those writes. Stop that process (or let Haven run the machine) and retry`,
    { ...ref, source, writers: found.writers, qemuWriteLock: found.qemuWriteLock },
  );
}

/** The machine and disk an export name (exportNameOf) stands for. */
export function refOf(name: string): DiskRef {
  const [machineId = '', diskId = ''] = name.split('.');
  return { machineId, diskId };
}

async function oldestPendingAt(service: DiskService, name: string): Promise<string | null> {
  const journal = service.journal(name);
  for await (const record of journal.records()) return new Date(record.timeMs).toISOString();
  return null;
}

export function hostDiskService(service: DiskService, options: HostDiskServiceOptions): HostDiskService {
  /** The disks the sinks mirror and the servers' devices the legs stage: Haven never opens them, so only this remembers them. */
  const mirrored = new Map<string, string>();
  const sourceOf = (info: DiskExportInfo): string => mirrored.get(info.name) ?? info.imagePath ?? '';
  const toExport = (info: DiskExportInfo): DiskExport => ({
    ...refOf(info.name),
    nbdUri: info.uri,
    sizeBytes: info.sizeBytes,
    source: sourceOf(info),
    ...(info.serverLeg === null || info.imagePath === null ? {} : { stagingImage: info.imagePath }),
    ...(info.sink === null ? {} : { sink: { ready: info.sink.readySeq !== null } }),
    pendingBytes: service.journal(info.name).status.usedBytes,
  });
  const exportsOf = (machineId: string): DiskExportInfo[] =>
    service.list().filter((e) => refOf(e.name).machineId === machineId);
  const namesOf = (machineIds: readonly string[]): string[] =>
    [...new Set(machineIds)].flatMap((machineId) => {
      const disks = exportsOf(machineId);
      if (disks.length === 0) {
        throw new HavenError('not_found', `machine '${machineId}' has no disk attached to this host`, {
          kind: 'machine',
          id: machineId,
        });
      }
      return disks.map((d) => d.name);
    });
  const markerOf = (type: string, id: string, groupPointId: string | null): DiskMarker => ({
    // The journal knows app-consistent and group (crash-consistent cut) markers.
    type: type === 'app-consistent' ? 'app-consistent' : 'group',
    id,
    label: groupPointId === null ? type : `${type} group ${groupPointId}`,
    ...(groupPointId === null ? {} : { groupPointId }),
  });
  const holds = new Map<string, { names: string[]; heldAtMs: number; release: () => void }>();
  const releaseHold = (holdId: string): number | null => {
    const hold = holds.get(holdId);
    if (!hold) return null;
    holds.delete(holdId);
    hold.release();
    return Date.now() - hold.heldAtMs;
  };

  return {
    async list(params) {
      const all = service.list().map(toExport);
      return params?.machineId === undefined ? all : all.filter((d) => d.machineId === params.machineId);
    },

    async attach(params) {
      const name = exportName(params);
      // Attaching again what is already attached is how a retried job step finds it: same image, same answer.
      const current = service.list().find((e) => e.name === name);
      if (current) {
        const source = sourceOf(current);
        if (
          resolve(source) !== resolve(params.source) ||
          (current.sink !== null) !== (params.sink === true) ||
          (current.serverLeg !== null) !== (params.serverLeg === true)
        ) {
          throw new HavenError(
            'conflict',
            `disk ${params.diskId} of machine ${params.machineId} is attached from '${source}'` +
              `${current.sink === null ? '' : ' as a sink'}, not '${params.source}'${params.sink === true ? ' as a sink' : ''}; detach it first`,
            { source },
          );
        }
        // A sink's image is written by the domain's own QEMU, whose writes the mirror brings here; a leg's device is the server's.
        if (current.sink === null && current.serverLeg === null)
          await refuseForeignWriters(params, params.source);
        return toExport(current);
      }
      if (params.sink === true) {
        // The machine's own disk stays its disk: QEMU mirrors its writes into the sink.
        const info = await service.attach(name, {
          sink: { sizeBytes: params.sizeBytes },
          journalDir: journalDirOf(options.dataDir, params),
          ...(options.journalCapacityBytes === undefined
            ? {}
            : { journalCapacityBytes: options.journalCapacityBytes }),
          description: `mirror sink of machine ${params.machineId} disk ${params.diskId}`,
        });
        mirrored.set(name, resolve(params.source));
        return toExport(info);
      }
      // A server's leg: the device is on the server; the host stages what md writes to the leg.
      const image = params.serverLeg === true ? serverLegImageOf(options.dataDir, params) : params.source;
      let existing: number | null = null;
      try {
        existing = (await stat(image)).size;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      if (existing === null) {
        // A new disk (e.g. a machine recreated at an alternate location) may live in a new folder.
        await mkdir(dirname(image), { recursive: true, mode: PRIVATE_DIR_MODE });
        await createSparseImage(image, params.sizeBytes);
      } else if (existing !== params.sizeBytes) {
        throw new HavenError(
          'conflict',
          `disk image '${image}' is ${existing} bytes, not the ${params.sizeBytes} bytes asked for; resize it first`,
          { source: image, sizeBytes: existing },
        );
      } else {
        // Before the disk service opens it: once it serves the image, another writer would go unseen.
        await refuseForeignWriters(params, image);
      }
      const info = await service.attach(name, {
        imagePath: image,
        ...(params.serverLeg === true ? { serverLeg: { machineId: params.machineId } } : {}),
        journalDir: journalDirOf(options.dataDir, params),
        ...(options.journalCapacityBytes === undefined
          ? {}
          : { journalCapacityBytes: options.journalCapacityBytes }),
        description:
          params.serverLeg === true
            ? `md leg of server ${params.machineId} device ${params.source}`
            : `machine ${params.machineId} disk ${params.diskId}`,
      });
      if (params.serverLeg === true) mirrored.set(name, params.source);
      return toExport(info);
    },

    async detach(params) {
      const name = exportName(params);
      await service.detach(name);
      mirrored.delete(name);
    },

    async writers(params) {
      exportName(params);
      return writersOf(params.source);
    },

    async insertMarker(params) {
      const names = namesOf(params.machineIds);
      const markerId = params.groupPointId ?? randomUUID();
      const records = await service.insertMarkers(
        names,
        markerOf(params.type, markerId, params.groupPointId),
      );
      const timeMs = Math.min(...records.map((r) => r.timeMs));
      return { markerId, time: new Date(timeMs).toISOString() };
    },

    async holdWrites(params): Promise<WriteHold> {
      const timeoutMs = Math.floor(Number(params.timeoutMs));
      if (!(timeoutMs >= 1 && timeoutMs <= MAX_WRITE_HOLD_MS)) {
        throw new HavenError(
          'validation_failed',
          `write hold timeout ${String(params.timeoutMs)} ms is not between 1 and ${MAX_WRITE_HOLD_MS} ms`,
          { field: 'timeoutMs' },
        );
      }
      const names = namesOf(params.machineIds);
      const startedMs = Date.now();
      const holdId = randomUUID();
      let expired = false;
      // The bound counts from the first held disk: waiting for running writes to drain is part of it.
      const timer = setTimeout(() => {
        expired = true;
        releaseHold(holdId);
      }, timeoutMs);
      timer.unref();
      const release = await service.holdChanges(names).catch((error: unknown) => {
        clearTimeout(timer);
        throw error;
      });
      if (expired) {
        release();
        throw new HavenError(
          'unreachable',
          `writes of ${names.join(', ')} could not be held within ${timeoutMs} ms (running writes did not finish)`,
          { timeoutMs },
        );
      }
      holds.set(holdId, {
        names,
        heldAtMs: Date.now(),
        release: () => {
          clearTimeout(timer);
          release();
        },
      });
      return {
        holdId,
        heldAt: new Date().toISOString(),
        expiresAt: new Date(startedMs + timeoutMs).toISOString(),
      };
    },

    async insertMarkerHeld(params) {
      const hold = holds.get(params.holdId);
      if (!hold) {
        throw new HavenError(
          'conflict',
          `write hold '${String(params.holdId).slice(0, 64)}' has expired or was released; the marker needs writes held`,
          { holdId: params.holdId },
        );
      }
      // A hold that expires during the flush adds no marker: it would not be one instant with the other hosts'.
      const records = await service.appendMarkers(
        hold.names,
        markerOf(params.type, params.groupPointId, params.groupPointId),
        { stillHeld: () => holds.get(params.holdId) === hold },
      );
      const timeMs = Math.min(...records.map((r) => r.timeMs));
      return { markerId: params.groupPointId, time: new Date(timeMs).toISOString() };
    },

    async releaseWrites(params) {
      return { heldMs: releaseHold(params.holdId) };
    },

    async journalStatus(params): Promise<HostJournalStatus> {
      const disks = await Promise.all(
        exportsOf(params.machineId).map(async (e) => {
          const status = service.journalStatus(e.name);
          return {
            ...refOf(e.name),
            pendingBytes: status.usedBytes,
            oldestPendingAt: await oldestPendingAt(service, e.name),
            lastWriteAt: status.lastWriteAt,
          };
        }),
      );
      return { machineId: params.machineId, disks };
    },
  };
}
