/**
 * A host's data path: the disk service (protected disks, write journals),
 * the replication sender and receiver, and the replica store with its
 * point-in-time views. Every host runs all of them, because a host is the
 * primary for some machines and the recovery site for others, and reprotect
 * reverses the direction.
 *
 * What the vault asked for (attached disks, replications, trusted senders) is
 * kept in `<dataDir>/data-path.json` and restored when the agent restarts, so
 * replication resumes on its own after a host crash.
 */
import { chmod, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DiskService, type JournaledBackend, type Region, WriteJournal } from '../disk/index.ts';
import { HavenError } from '../errors/index.ts';
import type { BlockBackend } from '../nbd/block-backend.ts';
import type { OverlayView, RetentionPolicy } from '../replica/index.ts';
import {
  DEFAULT_RETENTION,
  formatRecoveryPointRef,
  machinePoints,
  mergeRegions,
  parseRecoveryPointRef,
  ReplicaStore,
  regionBytes,
  seqOfPoint,
} from '../replica/index.ts';
import {
  type DiskReplicationStatus,
  generateHostIdentity,
  type HostIdentity,
  Receiver,
  type ReplicationSource,
  Sender,
} from '../replication/index.ts';
import { readSenderState, type SenderDiskState, writeSenderState } from '../replication/sender-state.ts';
import { writeFileAtomic } from '../storage/atomic-file.ts';
import { diskIdOf, diskKeyOf, isDiskOf } from './disk-key.ts';
import { hostDiskService } from './host-disk-service.ts';
import type {
  AdoptedDisk,
  DiskRef,
  HostServices,
  ReplicationStatus,
  ReplicationTarget,
} from './host-services.ts';
import { HostStateFile } from './host-state-file.ts';
import { type OpenView, ViewRegistry } from './view-registry.ts';

export interface DataPathOptions {
  dataDir: string;
  /** Where the replication receiver listens (SPEC §6, default port 9443); port 0 picks a free one. */
  replicationListen?: { host: string; port: number };
  /** Address peers use to reach the receiver, when it differs from the listen address. */
  replicationAdvertise?: string;
  retention?: Partial<RetentionPolicy>;
  journalCapacityBytes?: number;
  /** Sender tuning (tests use short polls). */
  senderPollMs?: number;
  /** Replication bandwidth limit for everything this host sends, bytes per second. */
  bandwidthBytesPerSec?: number;
}

export interface DataPath {
  services: Pick<HostServices, 'disk' | 'replication' | 'replica'>;
  capabilities: string[];
  replicationAddress: string;
  replicationFingerprint: string;
  diskService: DiskService;
  replicaStore: ReplicaStore;
  /** An open view's disk as a block device (tests; the hypervisor uses the NBD URI). */
  viewBackend(viewId: string, diskId: string): BlockBackend;
  close(): Promise<void>;
}

/** What a replicated disk reads from: its journal, for the status (lag, regions still to copy). */
interface SendingFrom {
  journal: WriteJournal;
  exportName: string | null;
  viewId: string | null;
}

const VIEW_ID = /^[A-Za-z0-9_-]{1,40}$/;

const exportNameOf = (machineId: string, diskId: string): string => `${machineId}.${diskId}`;

export async function startDataPath(options: DataPathOptions): Promise<DataPath> {
  const { dataDir } = options;
  const run = join(dataDir, 'run');
  await mkdir(run, { recursive: true });
  const state = await HostStateFile.load(join(dataDir, 'data-path.json'));
  const identity = await loadIdentity(join(dataDir, 'replication-identity.json'));

  const diskService = await DiskService.start({
    socket: join(run, 'disks.sock'),
    ...(options.journalCapacityBytes ? { journalCapacityBytes: options.journalCapacityBytes } : {}),
  });
  const disk = hostDiskService(diskService, {
    dataDir,
    ...(options.journalCapacityBytes ? { journalCapacityBytes: options.journalCapacityBytes } : {}),
  });
  const replicaStore = await ReplicaStore.open(join(dataDir, 'replica'), {
    ...(options.retention ? { retention: options.retention } : {}),
    retentionIntervalMs: 60_000,
  });
  const receiver = new Receiver({
    identity,
    sink: replicaStore,
    allowedSenders: [...state.trustedSenders],
    host: options.replicationListen?.host ?? '127.0.0.1',
    port: options.replicationListen?.port ?? 9443,
  });
  const bound = await receiver.listen();
  const replicationAddress = options.replicationAdvertise ?? `${bound.host}:${bound.port}`;
  const sender = new Sender({
    identity,
    ...(options.senderPollMs ? { pollMs: options.senderPollMs } : {}),
    ...(options.bandwidthBytesPerSec ? { bandwidthBytesPerSec: options.bandwidthBytesPerSec } : {}),
  });
  const views = await ViewRegistry.listen(replicaStore, join(run, 'views.sock'));
  const sending = new Map<string, SendingFrom>();
  const journalDirOf = (machineId: string, diskId: string) => join(dataDir, 'journals', machineId, diskId);
  const senderStatePath = (machineId: string, diskId: string) =>
    join(dataDir, 'replication', machineId, `${diskId}.json`);

  const diskKeysOf = (machineId: string) =>
    replicaStore
      .listDisks()
      .map((d) => d.diskKey)
      .filter((k) => isDiskOf(k, machineId));

  const startSending = (machineId: string, diskIds: string[], target: ReplicationTarget, viewId?: string) => {
    const [host, port] = splitAddress(target.address);
    const added: string[] = [];
    for (const diskId of diskIds) {
      const diskKey = diskKeyOf(machineId, diskId);
      if (sender.statuses().some((s) => s.diskKey === diskKey)) continue;
      let source: ReplicationSource;
      let from: SendingFrom;
      if (viewId === undefined) {
        const exportName = exportNameOf(machineId, diskId);
        const backend = diskService.backend(exportName) as JournaledBackend;
        source = backend;
        from = { journal: backend.journal, exportName, viewId: null };
      } else {
        const disk = views.writable(viewId, machineId).disks.find((d) => d.diskId === diskId);
        if (disk === undefined) {
          throw new HavenError('not_found', `view '${viewId}' has no disk '${diskId}'`, { diskId });
        }
        const overlay = disk.view;
        source = overlay;
        from = { journal: overlay.journal, exportName: null, viewId };
      }
      sender.addDisk({
        diskKey,
        source,
        receiver: { host, port, fingerprint: target.fingerprint },
        statePath: senderStatePath(machineId, diskId),
      });
      sending.set(diskKey, from);
      added.push(diskKey);
    }
    return added;
  };

  /** Replicating from this view: it cannot be closed or merged under the sender. */
  const refuseIfSending = (viewId: string, what: string) => {
    const users = [...sending.entries()].filter(([, f]) => f.viewId === viewId).map(([k]) => k);
    if (users.length > 0) {
      throw new HavenError(
        'operation_not_allowed',
        `view '${viewId}' is being replicated (${users.join(', ')}); stop replication before you ${what}`,
        { viewId, allowed: ['replication.stop'] },
      );
    }
  };

  /**
   * Prepares the sender's state for the mode asked (before the sender starts):
   * whether to copy, compare hashes, or only stream. Written durably first, so
   * a restart redoes an interrupted compare rather than skipping it.
   */
  const prepareMode = async (
    machineId: string,
    diskId: string,
    mode: 'full' | 'delta' | 'continue',
    overlay: OverlayView | null,
    extra: Region[],
  ) => {
    const path = senderStatePath(machineId, diskId);
    const current: SenderDiskState = await readSenderState(path);
    const hashCompare = overlay === null ? mode === 'delta' : mode === 'full';
    if (hashCompare) {
      await writeSenderState(path, { synced: true, sync: { kind: 'hash' } });
      // The compare covers every block: the view's diverged regions need no second copy.
      if (overlay?.journal.resyncRequired) {
        try {
          const plan = await overlay.beginResync();
          await overlay.journal.completeResync(plan);
        } catch {
          // The journal is full: the regions are copied once more after the compare; only bytes are lost.
        }
      }
      return;
    }
    if (mode === 'full') return;
    if (!current.synced) await writeSenderState(path, { synced: true, sync: current.sync });
    if (overlay !== null && mode === 'delta') {
      // Always at least one region: the reverse replica's first sync is what makes it consistent.
      const first = { offset: 0, length: Math.min(overlay.journal.regionSize, overlay.size) };
      await Promise.all([first, ...mergeRegions(extra)].map((r) => overlay.journal.markDirty([r])));
    }
  };

  const persistView = async (opened: OpenView) => {
    if (!opened.writable) return;
    const seqs = Object.fromEntries(opened.disks.map((d) => [d.diskId, d.seq]));
    await state.saveView({
      viewId: opened.viewId,
      machineId: opened.machineId,
      pointId: opened.pointId,
      seqs,
    });
  };
  const forgetView = (viewId: string) => state.forgetView(viewId);

  /** What this host's journal of a disk had not delivered: null when the journal is gone. */
  const unsentRegions = async (machineId: string, diskId: string, sizeBytes: number) => {
    const name = exportNameOf(machineId, diskId);
    const attached = diskService.list().some((e) => e.name === name);
    const dir = journalDirOf(machineId, diskId);
    if (
      !attached &&
      !(await stat(join(dir, 'state.json')).then(
        () => true,
        () => false,
      ))
    ) {
      return null;
    }
    const journal = attached
      ? diskService.backend(name).journal
      : await WriteJournal.open(dir, { diskSize: sizeBytes, capacityBytes: 1 << 30 });
    try {
      const regions: Region[] = [...journal.dirtyRegions()];
      for await (const r of journal.records()) {
        if (r.kind === 'write' || r.kind === 'trim' || r.kind === 'zero') {
          regions.push({ offset: r.offset, length: r.length });
        }
      }
      return mergeRegions(regions);
    } finally {
      if (!attached) await journal.close();
    }
  };

  // Bring back what the vault had set up before this agent stopped.
  for (const d of state.disks) await disk.attach(d);
  for (const v of [...state.views]) {
    await views.open({ ...v, writable: true, failover: false }).catch(async () => {
      // Merged or discarded while the agent was down: nothing runs from it any more.
      await forgetView(v.viewId);
    });
  }
  for (const r of state.replications) {
    await mkdir(join(dataDir, 'replication', r.machineId), { recursive: true });
    try {
      startSending(r.machineId, r.diskIds, r.target, r.viewId);
    } catch {
      // Its view is gone: the vault sees the replication stopped and decides.
    }
  }

  const attachDisk: DataPath['services']['disk']['attach'] = async (params) => {
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
      // A fresh journal must not come with an image made from nothing.
      await stat(ref.source).catch(() => {
        throw new HavenError(
          'not_found',
          `disk image '${ref.source}' does not exist: consolidate the machine's replica before attaching it`,
          { kind: 'image', id: ref.source },
        );
      });
      await rm(journalDirOf(ref.machineId, ref.diskId), { recursive: true, force: true });
    }
    const result = await disk.attach(ref);
    await state.addDisk(ref);
    return result;
  };

  const detachDisk = async (params: DiskRef) => {
    await disk.detach(params);
    await state.removeDisk(params);
  };

  const services: DataPath['services'] = {
    disk: {
      ...disk,
      attach: attachDisk,
      detach: detachDisk,
    },
    replication: {
      start: async ({ machineId, diskIds, target, mode, source }) => {
        await mkdir(join(dataDir, 'replication', machineId), { recursive: true });
        const viewId = source?.viewId;
        const opened = viewId === undefined ? null : views.writable(viewId, machineId);
        for (const diskId of diskIds) {
          if (sender.statuses().some((s) => s.diskKey === diskKeyOf(machineId, diskId))) continue;
          const overlay = opened?.disks.find((d) => d.diskId === diskId)?.view ?? null;
          if (opened !== null && overlay === null) {
            throw new HavenError('not_found', `view '${viewId}' has no disk '${diskId}'`, { diskId });
          }
          await prepareMode(machineId, diskId, mode, overlay, source?.extraRegions?.[diskId] ?? []);
        }
        startSending(machineId, diskIds, target, viewId);
        await state.setReplication({
          machineId,
          diskIds,
          target,
          ...(viewId === undefined ? {} : { viewId }),
        });
        return aggregate(machineId, sender.statuses(), diskService, sending);
      },
      stop: async ({ machineId }) => {
        for (const s of sender.statuses().filter((x) => isDiskOf(x.diskKey, machineId))) {
          await sender.removeDisk(s.diskKey);
          sending.delete(s.diskKey);
        }
        await state.removeReplication(machineId);
      },
      status: async ({ machineId }) => aggregate(machineId, sender.statuses(), diskService, sending),
      allowSender: async ({ fingerprint }) => {
        receiver.allowSender(fingerprint);
        await state.trustSender(fingerprint);
      },
    },
    replica: {
      listPoints: async ({ machineId }) => machinePoints(machineId, diskKeysOf(machineId), replicaStore),
      openView: async ({ machineId, pointId, writable, viewId: wanted, failover }) => {
        if (wanted !== undefined && !VIEW_ID.test(wanted)) {
          throw new HavenError(
            'validation_failed',
            `view id '${String(wanted).slice(0, 64)}' must be 1-40 letters, digits, '_' or '-'`,
            {
              field: 'viewId',
            },
          );
        }
        const already = wanted === undefined ? undefined : views.get(wanted);
        if (already !== undefined) {
          if (
            already.machineId !== machineId ||
            already.pointId !== pointId ||
            already.writable !== writable
          ) {
            throw new HavenError(
              'conflict',
              `view '${wanted}' is open for machine '${already.machineId}' at point '${already.pointId}'`,
              { viewId: wanted },
            );
          }
          if (failover) for (const d of already.disks) await replicaStore.seal(d.diskKey, true);
          return views.describe(already);
        }
        const keys = diskKeysOf(machineId);
        if (keys.length === 0)
          throw new HavenError('not_found', `no replica of machine '${machineId}' on this host`);
        const point = machinePoints(machineId, keys, replicaStore).find((p) => p.id === pointId);
        if (!point) {
          throw new HavenError(
            'not_found',
            `recovery point '${pointId}' of machine '${machineId}' does not exist`,
            {
              pointId,
            },
          );
        }
        const ref = parseRecoveryPointRef(point.id);
        const viewId = wanted ?? `${machineId.slice(0, 8)}-${Date.now().toString(36)}`;
        const seqs = Object.fromEntries(keys.map((k) => [diskIdOf(k), seqOfPoint(replicaStore, k, ref)]));
        const opened = await views.open({
          viewId,
          machineId,
          pointId,
          writable,
          seqs,
          failover: failover === true,
        });
        await persistView(opened);
        return views.describe(opened);
      },
      viewInfo: async ({ viewId }) => {
        const opened = views.get(viewId);
        if (!opened)
          throw new HavenError('not_found', `view '${viewId}' is not open on this host`, {
            kind: 'view',
            id: viewId,
          });
        return views.describe(opened);
      },
      closeView: async ({ viewId, discardWrites }) => {
        const opened = views.get(viewId);
        if (!opened) return;
        refuseIfSending(viewId, 'close it');
        await views.close(opened, discardWrites);
        await forgetView(viewId);
      },
      commitPoint: async ({ machineId, pointId }) => {
        const keys = diskKeysOf(machineId);
        const point = machinePoints(machineId, keys, replicaStore).find((p) => p.id === pointId);
        if (!point)
          throw new HavenError('not_found', `recovery point '${pointId}' does not exist`, { pointId });
        const ref = parseRecoveryPointRef(point.id);
        for (const diskKey of keys) {
          const seq = seqOfPoint(replicaStore, diskKey, ref);
          // Commit drops the records after the point: writable views there keep their regions to resync.
          const regions = replicaStore.regionsAfter(diskKey, seq);
          for (const overlay of views.overlaysAt(diskKey, seq)) {
            await Promise.all(regions.map((r) => overlay.journal.markDirty([r])));
          }
          // By id: the store checks the point is still kept.
          await replicaStore.commit(diskKey, formatRecoveryPointRef({ kind: 'disk', diskKey, seq }));
        }
      },
      setRetention: async ({ machineId, retentionSeconds, appConsistentFrequencySeconds }) => {
        const retentionMs = retentionSeconds * 1000;
        for (const diskKey of diskKeysOf(machineId)) {
          await replicaStore.setRetention(diskKey, {
            retentionMs,
            // Every point is kept for the recent window (ASR keeps 2 h), never longer than retention itself.
            fineWindowMs: Math.min(DEFAULT_RETENTION.fineWindowMs, retentionMs),
            ...(appConsistentFrequencySeconds > 0
              ? { appConsistentIntervalMs: appConsistentFrequencySeconds * 1000 }
              : {}),
          });
        }
      },
      deletePoints: async ({ machineId, before }) => {
        if (before !== undefined) {
          throw new HavenError(
            'not_available',
            'deleting points by age is done by the retention policy, not on request',
          );
        }
        const keys = diskKeysOf(machineId);
        for (const diskKey of keys) await replicaStore.removeDisk(diskKey);
        return { deleted: keys.length };
      },
      adoptImage: async ({
        machineId,
        diskId,
        imagePath,
        sizeBytes,
        durableSeq = 0,
      }): Promise<AdoptedDisk> => {
        const diskKey = diskKeyOf(machineId, diskId);
        if (sender.statuses().some((s) => isDiskOf(s.diskKey, machineId))) {
          throw new HavenError(
            'operation_not_allowed',
            `machine '${machineId}' still replicates from this host; stop its replication before reprotecting to it`,
            { machineId, allowed: ['replication.stop'] },
          );
        }
        const unsent = await unsentRegions(machineId, diskId, sizeBytes);
        if (diskService.list().some((e) => e.name === exportNameOf(machineId, diskId))) {
          await detachDisk({ machineId, diskId });
        }
        await replicaStore.adoptImage(diskKey, imagePath, sizeBytes, durableSeq);
        return {
          machineId,
          diskId,
          durableSeq: replicaStore.diskStatus(diskKey).durableSeq,
          unsentRegions: unsent,
          unsentBytes: unsent === null ? 0 : regionBytes(unsent),
        };
      },
      consolidate: async ({ machineId, restore }) => {
        for (const { diskId, imagePath } of restore) {
          const diskKey = diskKeyOf(machineId, diskId);
          if (sending.has(diskKey)) {
            throw new HavenError(
              'operation_not_allowed',
              `disk '${diskKey}' is being replicated from this host; stop replication first`,
              { diskKey, allowed: ['replication.stop'] },
            );
          }
          await replicaStore.restoreImage(diskKey, imagePath);
        }
      },
      consolidateView: async ({ machineId, viewId }) => {
        refuseIfSending(viewId, 'merge it');
        const opened = views.get(viewId);
        if (opened !== undefined && opened.machineId !== machineId) {
          throw new HavenError('conflict', `view '${viewId}' belongs to machine '${opened.machineId}'`, {
            viewId,
          });
        }
        if (opened !== undefined) await views.close(opened, false);
        await forgetView(viewId);
        const keys = opened?.disks.map((d) => d.diskKey) ?? diskKeysOf(machineId);
        for (const diskKey of keys) await replicaStore.consolidateView(diskKey, viewId, 0);
      },
    },
  };

  return {
    services,
    capabilities: ['disk-service', 'replication', 'replica-store'],
    replicationAddress,
    replicationFingerprint: identity.fingerprint,
    diskService,
    replicaStore,
    viewBackend: (viewId, diskId) => views.backend(viewId, diskId),
    close: async () => {
      await sender.close();
      await receiver.close();
      await views.closeAll();
      await diskService.close();
      await replicaStore.close();
    },
  };
}

/** One machine's replication, from its disks': the worst state, the oldest pending write. */
function aggregate(
  machineId: string,
  all: DiskReplicationStatus[],
  diskService: DiskService,
  sending: Map<string, SendingFrom>,
): ReplicationStatus {
  const mine = all.filter((s) => isDiskOf(s.diskKey, machineId));
  if (mine.length === 0) {
    return {
      machineId,
      state: 'stopped',
      progress: 0,
      lagSeconds: null,
      queuedBytes: 0,
      sentBytes: 0,
      lastError: null,
    };
  }
  const rank = ['error', 'connecting', 'initial-sync', 'resync', 'paused', 'streaming'] as const;
  const worst = mine.map((s) => s.state).sort((a, b) => rank.indexOf(a) - rank.indexOf(b))[0]!;
  const syncing = mine.filter((s) => s.syncProgress !== null);
  const progress =
    syncing.length === 0
      ? 100
      : Math.floor(syncing.reduce((sum, s) => sum + (s.syncProgress ?? 0), 0) / syncing.length);
  let lag: number | null = 0;
  let queued = 0;
  for (const s of mine) {
    const from = sending.get(s.diskKey);
    // Regions still to copy (diverged regions of a reprotect, a journal overflow) are queued too.
    if (s.resyncRequired && from !== undefined) queued += regionBytes(from.journal.dirtyRegions());
    queued += s.bytesPending;
    if (s.bytesPending === 0) continue;
    const lastWriteAt = from?.exportName ? diskService.journalStatus(from.exportName).lastWriteAt : null;
    const lastWrite = Date.parse(lastWriteAt ?? '') || Date.now();
    const since = s.lastAckedRecordTimeMs ?? lastWrite;
    lag = Math.max(lag ?? 0, (Date.now() - Math.min(since, lastWrite)) / 1000);
  }
  const resyncing = mine.some((s) => s.resyncRequired);
  const state = worst === 'connecting' ? (syncing.length > 0 ? 'initial-sync' : 'streaming') : worst;
  return {
    machineId,
    state: state === 'streaming' && resyncing ? 'resync' : state,
    progress,
    lagSeconds: lag,
    queuedBytes: queued,
    sentBytes: mine.reduce((sum, s) => sum + s.wireBytesSent, 0),
    lastError: mine.find((s) => s.lastError)?.lastError ?? null,
    syncs: mine.flatMap((s) =>
      s.lastSync === null
        ? []
        : [
            {
              diskId: diskIdOf(s.diskKey),
              kind: s.lastSync.kind,
              diskBytes: s.lastSync.diskBytes,
              regionBytes: s.lastSync.regionBytes,
              wireBytes: s.lastSync.wireBytes,
              blocksCompared: s.lastSync.blocksCompared,
              blocksDiffering: s.lastSync.blocksDiffering,
              completed: s.lastSync.completed,
            },
          ],
    ),
  };
}

function splitAddress(address: string): [string, number] {
  const colon = address.lastIndexOf(':');
  const port = Number(address.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port)) {
    throw new HavenError('bad_request', `replication address '${address}' is not host:port`, {
      field: 'address',
    });
  }
  return [address.slice(0, colon).replace(/^\[|\]$/g, ''), port];
}

/** The host's replication certificate: made once, kept so peers' pins stay valid. */
async function loadIdentity(path: string): Promise<HostIdentity> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as HostIdentity;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const identity = await generateHostIdentity();
  await writeFileAtomic(path, JSON.stringify(identity));
  await chmod(path, 0o600);
  return identity;
}
