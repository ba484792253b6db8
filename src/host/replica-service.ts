/**
 * The host's `replica` operations: recovery points of the machines this
 * host holds replicas of, views of them (test copies, failover), commit,
 * retention, and the steps of reprotect and failback. Writable views are
 * saved in the host state file and reopened on restart, because a recovery
 * machine runs from them.
 */

import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type DiskService, type Region, WriteJournal } from '../disk/index.ts';
import { HavenError } from '../errors/index.ts';
import {
  DEFAULT_RETENTION,
  formatRecoveryPointRef,
  machinePoints,
  mergeRegions,
  parseRecoveryPointRef,
  type ReplicaStore,
  regionBytes,
  seqOfPoint,
} from '../replica/index.ts';
import { PRIVATE_DIR_MODE } from '../storage/private-files.ts';
import { diskIdOf, diskKeyOf, isDiskOf } from './disk-key.ts';
import { exportNameOf, journalDirOf } from './host-disk-service.ts';
import type {
  AdoptedDisk,
  Consolidated,
  DiskRef,
  DiskService as HostDiskService,
  ReplicaStore as HostReplicaStore,
  ImageWriteBack,
  ViewAccessRequest,
} from './host-services.ts';
import type { HostStateFile } from './host-state-file.ts';
import { convertToRaw, writeIntoImage } from './image-transfer.ts';
import { regionsBelow, restoreMdMetadataTail, saveMdMetadataTail } from './md-metadata-tail.ts';
import type { ReplicationService } from './replication-service.ts';
import {
  checkViewFilesystems,
  DEFAULT_FILESYSTEM_CHECK_TIMEOUT_MS,
  filesystemCheckDirOf,
  MAX_FILESYSTEM_CHECK_TIMEOUT_MS,
} from './view-filesystem-check.ts';
import type { OpenView, ViewAccess, ViewRegistry } from './view-registry.ts';

export interface ReplicaServiceOptions {
  /** The host's data directory: journals of disks adopted for reprotect are under it. */
  dataDir: string;
  replicaStore: ReplicaStore;
  views: ViewRegistry;
  /** Whether disks and views are being sent: those cannot be replaced or closed. */
  replication: Pick<ReplicationService, 'isSending' | 'sendsMachine' | 'refuseIfSendingView'>;
  /** The disk service's exports and journals: what a reprotected disk had not sent. */
  diskService: Pick<DiskService, 'list' | 'backend'>;
  /** The host's disk operations: adopting an image detaches its disk. */
  disks: HostDiskService;
  state: HostStateFile;
}

const VIEW_ID = /^[A-Za-z0-9_-]{1,40}$/;
const PSK_KEY = /^[0-9a-f]{64}$/;

function viewAccessOf(access: ViewAccessRequest): ViewAccess {
  if (!VIEW_ID.test(access.identity)) {
    throw new HavenError('validation_failed', `access identity must be 1-40 letters, digits, '_' or '-'`, {
      field: 'access.identity',
    });
  }
  if (!PSK_KEY.test(access.keyHex)) {
    throw new HavenError('validation_failed', 'access key must be 32 bytes as 64 lowercase hex digits', {
      field: 'access.keyHex',
    });
  }
  const expiresAt = new Date(access.expiresAt);
  if (Number.isNaN(expiresAt.getTime()) || expiresAt.getTime() <= Date.now()) {
    throw new HavenError(
      'validation_failed',
      `access expiry '${access.expiresAt}' is not a time in the future`,
      {
        field: 'access.expiresAt',
      },
    );
  }
  return { identity: access.identity, key: Buffer.from(access.keyHex, 'hex'), expiresAt };
}

type Params<K extends keyof HostReplicaStore> = Parameters<HostReplicaStore[K]>[0];

export class ReplicaService implements HostReplicaStore {
  readonly #o: ReplicaServiceOptions;
  /** Views whose filesystems are being checked: one check of a view at a time. */
  readonly #checking = new Set<string>();

  constructor(options: ReplicaServiceOptions) {
    this.#o = options;
  }

  async listPoints({ machineId }: Params<'listPoints'>) {
    return machinePoints(machineId, this.#diskKeysOf(machineId), this.#o.replicaStore);
  }

  async openView({ machineId, pointId, writable, viewId: wanted, failover, access }: Params<'openView'>) {
    const { views, replicaStore } = this.#o;
    if (wanted !== undefined && !VIEW_ID.test(wanted)) {
      throw new HavenError(
        'validation_failed',
        `view id '${String(wanted).slice(0, 64)}' must be 1-40 letters, digits, '_' or '-'`,
        { field: 'viewId' },
      );
    }
    const already = wanted === undefined ? undefined : views.get(wanted);
    if (already !== undefined) {
      if (already.machineId !== machineId || already.pointId !== pointId || already.writable !== writable) {
        throw new HavenError(
          'conflict',
          `view '${wanted}' is open for machine '${already.machineId}' at point '${already.pointId}'`,
          { viewId: wanted },
        );
      }
      if (failover) for (const d of already.disks) await replicaStore.seal(d.diskKey, true);
      return views.describe(already);
    }
    const keys = this.#diskKeysOf(machineId);
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
    if (access !== undefined && writable) {
      // Recorded before its overlay exists, so a crash from here on leaves nothing unswept;
      // records of views that closed since (expired) are dropped on the way.
      await this.#o.state.setAccessOverlays([
        ...this.#o.state.accessOverlays.filter((o) => views.get(o.viewId) !== undefined),
        { viewId, machineId },
      ]);
    }
    const opened = await views.open({
      viewId,
      machineId,
      pointId,
      writable,
      seqs,
      failover: failover === true,
      ...(access === undefined ? {} : { access: viewAccessOf(access) }),
    });
    // An access view lives only as long as this agent runs (its key is in memory only): never reopened.
    if (access === undefined) await this.#saveView(opened);
    return views.describe(opened);
  }

  async viewInfo({ viewId }: Params<'viewInfo'>) {
    const opened = this.#o.views.get(viewId);
    if (!opened) {
      throw new HavenError('not_found', `view '${viewId}' is not open on this host`, {
        kind: 'view',
        id: viewId,
      });
    }
    return this.#o.views.describe(opened);
  }

  async closeView({ viewId, discardWrites }: Params<'closeView'>) {
    const opened = this.#o.views.get(viewId);
    if (!opened) return;
    this.#o.replication.refuseIfSendingView(viewId, 'close it');
    await this.#o.views.close(opened, discardWrites);
    await this.#o.state.forgetView(viewId);
  }

  async checkFilesystems({
    viewId,
    timeoutMs = DEFAULT_FILESYSTEM_CHECK_TIMEOUT_MS,
    vmBoot = false,
  }: Params<'checkFilesystems'>) {
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_FILESYSTEM_CHECK_TIMEOUT_MS) {
      throw new HavenError(
        'validation_failed',
        `timeoutMs ${String(timeoutMs).slice(0, 32)} must be a whole number of milliseconds from 1 to ${MAX_FILESYSTEM_CHECK_TIMEOUT_MS}`,
        { field: 'timeoutMs' },
      );
    }
    const opened = this.#o.views.get(viewId);
    if (!opened) {
      throw new HavenError('not_found', `view '${viewId}' is not open on this host`, {
        kind: 'view',
        id: viewId,
      });
    }
    if (!opened.writable) {
      throw new HavenError(
        'operation_not_allowed',
        `view '${viewId}' is read-only; a filesystem check replays journals into the view, so it is allowed on writable views only`,
        { viewId, writable: false, allowed: ['replica.openView writable'] },
      );
    }
    this.#o.replication.refuseIfSendingView(viewId, 'check its filesystems');
    if (this.#checking.has(viewId)) {
      throw new HavenError('conflict', `the filesystems of view '${viewId}' are being checked already`, {
        viewId,
      });
    }
    this.#checking.add(viewId);
    try {
      return await checkViewFilesystems(await this.#o.views.describe(opened), {
        workDir: filesystemCheckDirOf(this.#o.dataDir),
        timeoutMs,
        vmBoot,
      });
    } finally {
      this.#checking.delete(viewId);
    }
  }

  async commitPoint({ machineId, pointId }: Params<'commitPoint'>) {
    const { views, replicaStore } = this.#o;
    const keys = this.#diskKeysOf(machineId);
    const point = machinePoints(machineId, keys, replicaStore).find((p) => p.id === pointId);
    if (!point) throw new HavenError('not_found', `recovery point '${pointId}' does not exist`, { pointId });
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
  }

  async setRetention({ machineId, retentionSeconds, appConsistentFrequencySeconds }: Params<'setRetention'>) {
    const retentionMs = retentionSeconds * 1000;
    for (const diskKey of this.#diskKeysOf(machineId)) {
      await this.#o.replicaStore.setRetention(diskKey, {
        retentionMs,
        // Every point is kept for the recent window (ASR keeps 2 h), never longer than retention itself.
        fineWindowMs: Math.min(DEFAULT_RETENTION.fineWindowMs, retentionMs),
        ...(appConsistentFrequencySeconds > 0
          ? { appConsistentIntervalMs: appConsistentFrequencySeconds * 1000 }
          : {}),
      });
    }
  }

  async deletePoints({ machineId, before }: Params<'deletePoints'>) {
    if (before !== undefined) {
      throw new HavenError(
        'not_available',
        'deleting points by age is done by the retention policy, not on request',
      );
    }
    const keys = this.#diskKeysOf(machineId);
    for (const diskKey of keys) await this.#o.replicaStore.removeDisk(diskKey);
    return { deleted: keys.length };
  }

  async adoptImage({
    machineId,
    diskId,
    imagePath,
    sizeBytes,
    durableSeq = 0,
    keepMdMetadata = false,
  }: Params<'adoptImage'>) {
    const { replicaStore, diskService } = this.#o;
    const diskKey = diskKeyOf(machineId, diskId);
    if (this.#o.replication.sendsMachine(machineId)) {
      throw new HavenError(
        'operation_not_allowed',
        `machine '${machineId}' still replicates from this host; stop its replication before reprotecting to it`,
        { machineId, allowed: ['replication.stop'] },
      );
    }
    const unsent = await this.#unsentRegions({ machineId, diskId }, sizeBytes);
    if (diskService.list().some((e) => e.name === exportNameOf({ machineId, diskId }))) {
      await this.#o.disks.detach({ machineId, diskId });
    }
    // Before the image moves into the store: consolidate puts it back around the failback's write.
    if (keepMdMetadata) await saveMdMetadataTail(imagePath);
    await replicaStore.adoptImage(diskKey, imagePath, sizeBytes, durableSeq);
    const adopted: AdoptedDisk = {
      machineId,
      diskId,
      durableSeq: replicaStore.diskStatus(diskKey).durableSeq,
      unsentRegions: unsent,
      unsentBytes: unsent === null ? 0 : regionBytes(unsent),
    };
    return adopted;
  }

  async consolidate({ machineId, restore }: Params<'consolidate'>): Promise<Consolidated> {
    const disks: Consolidated['disks'] = [];
    for (const { diskId, imagePath, keepMdMetadata } of restore) {
      const diskKey = diskKeyOf(machineId, diskId);
      if (this.#o.replication.isSending(diskKey)) {
        throw new HavenError(
          'operation_not_allowed',
          `disk '${diskKey}' is being replicated from this host; stop replication first`,
          { diskKey, allowed: ['replication.stop'] },
        );
      }
      const { written } = await this.#o.replicaStore.restoreImage(diskKey, imagePath);
      const metadataAt = keepMdMetadata === true ? await restoreMdMetadataTail(imagePath) : null;
      disks.push({ diskId, writtenRegions: regionsBelow(written, metadataAt) });
    }
    return { machineId, disks };
  }

  async seedFromImage({ machineId, diskId, imagePath, format, sizeBytes }: Params<'seedFromImage'>) {
    const { replicaStore } = this.#o;
    const diskKey = diskKeyOf(machineId, diskId);
    if (this.#o.replication.isSending(diskKey)) {
      throw new HavenError(
        'operation_not_allowed',
        `disk '${diskKey}' is being replicated from this host; stop its replication before seeding a replica of it here`,
        { diskKey, allowed: ['replication.stop'] },
      );
    }
    // The seed lives in the store's folder: adopting moves it in as the base, no second copy.
    const seeds = join(replicaStore.dir, 'seeds');
    const seed = join(seeds, `${encodeURIComponent(diskKey)}.raw`);
    const existing = replicaStore.listDisks().find((d) => d.diskKey === diskKey);
    if (existing === undefined) {
      await mkdir(seeds, { recursive: true, mode: PRIVATE_DIR_MODE });
      await convertToRaw(imagePath, format, seed, sizeBytes);
    }
    // Repeated: the same seed is already the base (anything else is refused as a conflict).
    await replicaStore.adoptImage(diskKey, seed, sizeBytes, 0, { consistent: true });
    return { diskKey, sizeBytes };
  }

  async writeBackToImage({ machineId, restore }: Params<'writeBackToImage'>): Promise<ImageWriteBack> {
    const { replicaStore } = this.#o;
    const keys = restore.map((r) => diskKeyOf(machineId, r.diskId));
    const present = new Set(replicaStore.listDisks().map((d) => d.diskKey));
    if (keys.every((k) => !present.has(k))) return { pointId: null, comparedBytes: 0, writtenBytes: 0 };
    for (const diskKey of keys) {
      if (this.#o.replication.isSending(diskKey)) {
        throw new HavenError(
          'operation_not_allowed',
          `disk '${diskKey}' is being replicated from this host; stop replication first`,
          { diskKey, allowed: ['replication.stop'] },
        );
      }
    }
    const point = machinePoints(machineId, this.#diskKeysOf(machineId), replicaStore).at(-1);
    if (point === undefined) {
      throw new HavenError(
        'conflict',
        `the replica of machine '${machineId}' on this host has no recovery point to write back`,
        { machineId },
      );
    }
    const ref = parseRecoveryPointRef(point.id);
    const result: ImageWriteBack = { pointId: point.id, comparedBytes: 0, writtenBytes: 0 };
    for (const [i, { imagePath, format }] of restore.entries()) {
      const diskKey = keys[i]!;
      if (!present.has(diskKey)) continue;
      const status = replicaStore.diskStatus(diskKey);
      // The base is still the seed (the image as it was): only what the records wrote can differ.
      const regions =
        status.baseSeq === 0
          ? replicaStore.regionsAfter(diskKey, 0)
          : [{ offset: 0, length: status.sizeBytes }];
      const view = await replicaStore.openView(diskKey, seqOfPoint(replicaStore, diskKey, ref));
      try {
        const done = await writeIntoImage({
          image: imagePath,
          format,
          sizeBytes: status.sizeBytes,
          regions,
          read: (offset, length) => view.read(offset, length),
          socketDir: join(this.#o.dataDir, 'run'),
        });
        result.comparedBytes += done.comparedBytes;
        result.writtenBytes += done.writtenBytes;
      } finally {
        await view.close();
      }
      await replicaStore.removeDisk(diskKey);
    }
    return result;
  }

  async consolidateView({ machineId, viewId }: Params<'consolidateView'>) {
    const { views, replicaStore } = this.#o;
    this.#o.replication.refuseIfSendingView(viewId, 'merge it');
    const opened = views.get(viewId);
    if (opened !== undefined && opened.machineId !== machineId) {
      throw new HavenError('conflict', `view '${viewId}' belongs to machine '${opened.machineId}'`, {
        viewId,
      });
    }
    if (opened !== undefined) await views.close(opened, false);
    await this.#o.state.forgetView(viewId);
    const keys = opened?.disks.map((d) => d.diskKey) ?? this.#diskKeysOf(machineId);
    for (const diskKey of keys) await replicaStore.consolidateView(diskKey, viewId, 0);
  }

  /**
   * Deletes the overlays of writable access views left by the agent that ran
   * before (stopped or crashed while they were open): they are never reopened,
   * and their overlays pin points. Returns the views swept.
   */
  async sweepAccessOverlays(): Promise<string[]> {
    const { state, views, replicaStore } = this.#o;
    const swept: string[] = [];
    for (const o of state.accessOverlays) {
      if (views.get(o.viewId) !== undefined) continue;
      let found = false;
      for (const diskKey of this.#diskKeysOf(o.machineId)) {
        if ((await replicaStore.keptView(diskKey, o.viewId)) === null) continue;
        await replicaStore.discardView(diskKey, o.viewId);
        found = true;
      }
      if (found) swept.push(o.viewId);
    }
    await state.setAccessOverlays(state.accessOverlays.filter((o) => views.get(o.viewId) !== undefined));
    return swept;
  }

  /** Opens again the writable views open when the agent stopped. */
  async reopenViews(): Promise<void> {
    for (const v of [...this.#o.state.views]) {
      await this.#o.views.open({ ...v, writable: true, failover: false }).catch(async () => {
        // Merged or discarded while the agent was down: nothing runs from it any more.
        await this.#o.state.forgetView(v.viewId);
      });
    }
  }

  #diskKeysOf(machineId: string): string[] {
    return this.#o.replicaStore
      .listDisks()
      .map((d) => d.diskKey)
      .filter((k) => isDiskOf(k, machineId));
  }

  async #saveView(opened: OpenView): Promise<void> {
    if (!opened.writable) return;
    const seqs = Object.fromEntries(opened.disks.map((d) => [d.diskId, d.seq]));
    await this.#o.state.saveView({
      viewId: opened.viewId,
      machineId: opened.machineId,
      pointId: opened.pointId,
      seqs,
    });
  }

  /** What this host's journal of a disk had not delivered: null when the journal is gone. */
  async #unsentRegions(ref: DiskRef, sizeBytes: number): Promise<Region[] | null> {
    const { diskService } = this.#o;
    const name = exportNameOf(ref);
    const attached = diskService.list().some((e) => e.name === name);
    const dir = journalDirOf(this.#o.dataDir, ref);
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
  }
}
