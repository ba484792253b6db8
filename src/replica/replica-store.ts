import { randomUUID } from 'node:crypto';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { JournalRecord, Region } from '../disk/index.ts';
import { HavenError } from '../errors/index.ts';
import type { ReplicaSink, SyncStart } from '../replication/replica-sink.ts';
import { PRIVATE_DIR_MODE } from '../storage/private-files.ts';
import type { OverlayOptions, OverlayView } from './overlay-view.ts';
import type { PointView } from './point-view.ts';
import { formatRecoveryPointRef } from './recovery-point-ref.ts';
import { type KeptView, moveImage, ReplicaDisk, type ReplicaDiskStatus } from './replica-disk.ts';
import { readMeta } from './replica-meta.ts';
import {
  checkRetention,
  DEFAULT_RETENTION,
  type RecoveryPointInfo,
  type RetentionPolicy,
} from './retention.ts';

export interface ReplicaStoreOptions {
  /** Default retention of every disk (per-disk: `setRetention`). */
  retention?: Partial<RetentionPolicy>;
  /** Size at which a new segment file of the segment log is started (default 64 MiB). */
  segmentBytes?: number;
  /** Most write bytes one merge step applies (default 64 MiB). */
  mergeStepBytes?: number;
  /** Runs retention on every disk at this interval (default: only when `runRetention` is called). */
  retentionIntervalMs?: number;
  now?: () => number;
}

/** A point: its id (a disk `RecoveryPointRef` as text), a sequence, or the latest point at or before a time. */
export type PointRef = string | number | { timeMs: number };

export interface OpenViewOptions {
  writable?: boolean;
  /** Writable views: the name the overlay is kept under (reopening it resumes it). Default: a new UUID. */
  viewId?: string;
  overlay?: OverlayOptions;
  /** Writable views of a failover: the replica refuses the old primary's records from now on. */
  seal?: boolean;
}

/** Moves a consolidated base out to the machine's image and deletes the replica's directory. */
async function finishRestore(diskDir: string, imagePath: string): Promise<void> {
  await moveImage(join(diskDir, 'base.img'), imagePath);
  await rm(diskDir, { recursive: true, force: true });
}

/**
 * The recovery host's replica store (successor of ASR's master target and
 * retention volume): per protected disk a base image, a segment log of the
 * retained records and a catalog of recovery points; point-in-time views served as
 * BlockBackends. It is what the replication receiver writes to (ReplicaSink).
 * Layout: `<dir>/disks/<encoded diskKey>/{meta.json, base.img, segments/, views/}`.
 */
export class ReplicaStore implements ReplicaSink {
  readonly dir: string;
  /** The segment log encodes an append's records, checking carried checksums, before it writes any. */
  readonly checksRecordChecksums = true;
  readonly #disks = new Map<string, ReplicaDisk>();
  readonly #creating = new Map<string, Promise<ReplicaDisk>>();
  readonly #views = new Set<PointView | OverlayView>();
  readonly #retention: RetentionPolicy;
  readonly #segmentBytes: number;
  readonly #mergeStepBytes: number;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  private constructor(dir: string, options: ReplicaStoreOptions) {
    this.dir = dir;
    this.#retention = checkRetention({ ...DEFAULT_RETENTION, ...options.retention });
    this.#segmentBytes = options.segmentBytes ?? 64 << 20;
    this.#mergeStepBytes = options.mergeStepBytes ?? 64 << 20;
    this.#now = options.now ?? Date.now;
  }

  /** Opens (or creates) a store, recovering each disk from whatever a crash interrupted. */
  static async open(dir: string, options: ReplicaStoreOptions = {}): Promise<ReplicaStore> {
    const store = new ReplicaStore(dir, options);
    const disksDir = join(dir, 'disks');
    await mkdir(disksDir, { recursive: true, mode: PRIVATE_DIR_MODE });
    try {
      for (const name of await readdir(disksDir)) {
        const diskDir = join(disksDir, name);
        const meta = await readMeta(join(diskDir, 'meta.json'));
        // A disk whose creation did not finish has no metadata: it never accepted anything.
        if (meta === null) {
          await rm(diskDir, { recursive: true, force: true });
          continue;
        }
        // A consolidation moving the base out was interrupted: finish it.
        if (meta.restoreTo) {
          await finishRestore(diskDir, meta.restoreTo);
          continue;
        }
        const disk = await ReplicaDisk.open(diskDir, store.#diskOptions());
        store.#disks.set(disk.diskKey, disk);
      }
    } catch (e) {
      await store.close();
      throw e;
    }
    if (options.retentionIntervalMs !== undefined) {
      store.#timer = setInterval(() => {
        void store.runRetention().catch(() => {});
      }, options.retentionIntervalMs);
      store.#timer.unref();
    }
    return store;
  }

  #diskOptions() {
    return {
      segmentBytes: this.#segmentBytes,
      mergeStepBytes: this.#mergeStepBytes,
      retention: this.#retention,
    };
  }

  #disk(diskKey: string): ReplicaDisk {
    if (this.#closed) throw new HavenError('operation_not_allowed', `replica store '${this.dir}' is closed`);
    const disk = this.#disks.get(diskKey);
    if (disk === undefined) {
      throw new HavenError('not_found', `replica disk '${diskKey}' does not exist`, {
        kind: 'replica',
        id: diskKey,
      });
    }
    return disk;
  }

  // --- ReplicaSink -----------------------------------------------------------

  async ensureDisk(diskKey: string, sizeBytes: number): Promise<void> {
    if (typeof diskKey !== 'string' || diskKey.length === 0 || diskKey.length > 200) {
      throw new HavenError(
        'validation_failed',
        'a replica disk key is a non-empty string of at most 200 characters',
        {
          field: 'diskKey',
        },
      );
    }
    const existing = this.#disks.get(diskKey) ?? (await this.#creating.get(diskKey));
    if (existing !== undefined) {
      if (existing.sizeBytes !== sizeBytes) {
        throw new HavenError(
          'conflict',
          `replica disk '${diskKey}' exists with ${existing.sizeBytes} bytes, not ${sizeBytes}; resizing is not supported`,
          { diskKey, sizeBytes: existing.sizeBytes },
        );
      }
      return;
    }
    if (this.#closed) throw new HavenError('operation_not_allowed', `replica store '${this.dir}' is closed`);
    const creating = ReplicaDisk.create(
      join(this.dir, 'disks', encodeURIComponent(diskKey)),
      diskKey,
      sizeBytes,
      this.#diskOptions(),
    );
    this.#creating.set(diskKey, creating);
    try {
      this.#disks.set(diskKey, await creating);
    } finally {
      this.#creating.delete(diskKey);
    }
  }

  async durableSequence(diskKey: string): Promise<number> {
    return this.#disk(diskKey).durableSeq;
  }

  async append(diskKey: string, records: JournalRecord[]): Promise<number> {
    return this.#disk(diskKey).append(records);
  }

  async beginSync(diskKey: string, sync: SyncStart): Promise<void> {
    return this.#disk(diskKey).beginSync(sync);
  }

  async writeSyncData(
    diskKey: string,
    syncId: string,
    offset: number,
    data: Buffer | null,
    length: number,
  ): Promise<void> {
    return this.#disk(diskKey).writeSyncData(syncId, offset, data, length);
  }

  async completeSync(diskKey: string, syncId: string, throughSeq: number): Promise<void> {
    return this.#disk(diskKey).completeSync(syncId, throughSeq);
  }

  // --- Catalog --------------------------------------------------------------

  listDisks(): ReplicaDiskStatus[] {
    return [...this.#disks.values()].map((d) => d.status());
  }

  diskStatus(diskKey: string): ReplicaDiskStatus {
    return this.#disk(diskKey).status();
  }

  /** Bytes the disk's replica occupies on the file system (base image blocks + segments). */
  async diskUsage(diskKey: string): Promise<number> {
    const disk = this.#disk(diskKey);
    const base = await stat(join(disk.dir, 'base.img'));
    return base.blocks * 512 + disk.status().logBytes;
  }

  async setRetention(diskKey: string, policy: Partial<RetentionPolicy> | null): Promise<void> {
    const full = policy === null ? null : checkRetention({ ...this.#retention, ...policy });
    return this.#disk(diskKey).setRetention(full);
  }

  /** The disk's recovery points, oldest first. */
  listPoints(diskKey: string, nowMs = this.#now()): RecoveryPointInfo[] {
    return this.#disk(diskKey).points(nowMs);
  }

  /** "Any point in time": the latest point at or before `timeMs` (every point is crash-consistent). */
  pointAt(diskKey: string, timeMs: number): RecoveryPointInfo {
    const points = this.listPoints(diskKey);
    const found = points.filter((p) => p.timeMs <= timeMs).at(-1);
    if (found === undefined) {
      throw new HavenError(
        'not_found',
        `replica disk '${diskKey}' has no recovery point at or before ${new Date(timeMs).toISOString()}` +
          (points[0] === undefined ? ' (it has no point yet)' : ` (the oldest is ${points[0].time})`),
        { kind: 'recovery_point', diskKey, timeMs },
      );
    }
    return found;
  }

  /** Resolves a point reference to a sequence of the disk. */
  resolve(diskKey: string, ref: PointRef): number {
    if (typeof ref === 'number') return ref;
    if (typeof ref === 'object') return this.pointAt(diskKey, ref.timeMs).seq;
    const point = this.listPoints(diskKey).find((p) => p.id === ref);
    if (point === undefined) {
      throw new HavenError(
        'not_found',
        `recovery point '${ref}' of replica disk '${diskKey}' does not exist`,
        {
          kind: 'recovery_point',
          id: ref,
        },
      );
    }
    return point.seq;
  }

  // --- Views ----------------------------------------------------------------

  /**
   * A BlockBackend showing the disk at a point: read-only, or writable (a
   * copy-on-write overlay whose writes are journaled). Opening costs time in
   * proportion to the retained records, not the disk size. The point is
   * pinned against merges until the view is closed (a writable view's pin is
   * kept until `discardView`).
   */
  openView(
    diskKey: string,
    ref: PointRef,
    options: OpenViewOptions & { writable: true },
  ): Promise<OverlayView>;
  openView(
    diskKey: string,
    ref: PointRef,
    options?: OpenViewOptions & { writable?: false },
  ): Promise<PointView>;
  openView(diskKey: string, ref: PointRef, options?: OpenViewOptions): Promise<PointView | OverlayView>;
  async openView(
    diskKey: string,
    ref: PointRef,
    options: OpenViewOptions = {},
  ): Promise<PointView | OverlayView> {
    const disk = this.#disk(diskKey);
    const seq = this.resolve(diskKey, ref);
    const view = options.writable
      ? await disk.openWritableView(seq, options.viewId ?? randomUUID(), options.overlay ?? {}, options.seal)
      : await disk.openView(seq, formatRecoveryPointRef({ kind: 'disk', diskKey, seq }));
    this.#views.add(view);
    const close = view.close.bind(view);
    view.close = async () => {
      this.#views.delete(view);
      await close();
    };
    return view;
  }

  /** Deletes a writable view's overlay and write journal and releases its point (close the view first). */
  async discardView(diskKey: string, viewId: string): Promise<void> {
    return this.#disk(diskKey).discardView(viewId);
  }

  /**
   * Deletes a disk's replica: base, segment log and points (disable replication).
   * Refused while a view of it is open: a running recovery machine reads it.
   */
  async removeDisk(diskKey: string): Promise<void> {
    const disk = this.#disk(diskKey);
    const open = disk.status().openViews;
    if (open > 0) {
      throw new HavenError(
        'operation_not_allowed',
        `replica disk '${diskKey}' has ${open} open view(s); close them before removing it`,
        { diskKey, openViews: open },
      );
    }
    this.#disks.delete(diskKey);
    await disk.close();
    await rm(disk.dir, { recursive: true, force: true });
  }

  /** The replica's current contents (base and every stored record): the receiver hashes them for a hash-compare resync. */
  async read(diskKey: string, offset: number, length: number): Promise<Buffer> {
    return this.#disk(diskKey).read(offset, length);
  }

  /** Merged byte ranges the disk's retained records after `seq` wrote (what a failover at `seq` loses). */
  regionsAfter(diskKey: string, seq: number): Region[] {
    return this.#disk(diskKey).regionsAfter(seq);
  }

  /** A kept writable view's record (point, diverged bytes), or null. */
  keptView(diskKey: string, viewId: string): Promise<KeptView | null> {
    return this.#disk(diskKey).keptView(viewId);
  }

  /** Failover: refuse the old primary's records from now on (or accept them again). */
  async seal(diskKey: string, sealed: boolean): Promise<void> {
    return this.#disk(diskKey).seal(sealed);
  }

  /**
   * Reprotect to the original machine: makes the disk's replica from the
   * machine's own image, moved in as the base (same file system: no copy).
   * Records resume after `durableSeq`; no point exists until the sender's
   * first sync (the regions that diverged, or a hash compare) completes.
   * Repeating it for the same image is harmless. `consistent`: the image is
   * a whole disk the records continue from (a copy of a stopped machine's
   * image), so points come from the records' own flushes, no sync needed.
   */
  async adoptImage(
    diskKey: string,
    imagePath: string,
    sizeBytes: number,
    durableSeq: number,
    { consistent = false }: { consistent?: boolean } = {},
  ): Promise<void> {
    if (!Number.isSafeInteger(durableSeq) || durableSeq < 0) {
      throw new HavenError('bad_request', `durable sequence ${durableSeq} is not a non-negative integer`, {
        field: 'durableSeq',
      });
    }
    const existing = this.#disks.get(diskKey);
    if (existing !== undefined) {
      if (existing.adoptedFrom === imagePath) return;
      throw new HavenError(
        'conflict',
        `replica disk '${diskKey}' already exists; remove it before adopting image '${imagePath}'`,
        { diskKey },
      );
    }
    let size: number;
    try {
      size = (await stat(imagePath)).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      throw new HavenError(
        'not_found',
        `disk image '${imagePath}' does not exist; reprotect with a full copy`,
        {
          kind: 'image',
          id: imagePath,
        },
      );
    }
    if (size !== sizeBytes) {
      throw new HavenError('conflict', `disk image '${imagePath}' is ${size} bytes, not ${sizeBytes}`, {
        sizeBytes: size,
      });
    }
    const disk = await ReplicaDisk.adopt(
      join(this.dir, 'disks', encodeURIComponent(diskKey)),
      diskKey,
      sizeBytes,
      imagePath,
      durableSeq,
      this.#diskOptions(),
      consistent,
    );
    this.#disks.set(diskKey, disk);
  }

  /**
   * Complete failover after failback: merges every record into the disk's base,
   * moves the base to `imagePath` (the machine's own image) and removes the
   * replica. Crash-safe (finished on open) and harmless to repeat. Answers
   * the ranges written into an adopted base since its adoption (null when
   * not adopted, or already moved out by an earlier call).
   */
  async restoreImage(diskKey: string, imagePath: string): Promise<{ written: Region[] | null }> {
    const disk = this.#disks.get(diskKey);
    if (disk === undefined) {
      // Already moved out by an earlier call (or a crash finished on open): what it wrote is no longer known.
      if (
        await stat(imagePath).then(
          () => true,
          () => false,
        )
      )
        return { written: null };
      this.#disk(diskKey);
      return { written: null };
    }
    const written = await disk.prepareRestore(imagePath);
    this.#disks.delete(diskKey);
    await disk.close();
    await finishRestore(disk.dir, imagePath);
    return { written };
  }

  /**
   * Commit after failback: merges a writable view into the disk's base and
   * drops the view; records resume after `durableSeq` (0 for a primary whose
   * journal starts again at 1). Close the view first. Harmless to repeat.
   */
  async consolidateView(diskKey: string, viewId: string, durableSeq = 0): Promise<void> {
    return this.#disk(diskKey).consolidateView(viewId, durableSeq, this.#now());
  }

  /** Keeps the chosen point's state and deletes every other point of the disk (SPEC §3). */
  async commit(diskKey: string, pointId: string): Promise<void> {
    const disk = this.#disk(diskKey);
    await disk.commit(this.resolve(diskKey, pointId));
  }

  /** Thins and merges what fell out of the retention window, on one disk or all; returns base sequences. */
  async runRetention(diskKey?: string, nowMs = this.#now()): Promise<Record<string, number>> {
    const disks = diskKey === undefined ? [...this.#disks.values()] : [this.#disk(diskKey)];
    const out: Record<string, number> = {};
    for (const d of disks) out[d.diskKey] = await d.runRetention(nowMs);
    return out;
  }

  /** Closes open views, then every disk (acknowledged data is already durable). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    for (const view of [...this.#views]) await view.close();
    for (const disk of this.#disks.values()) await disk.close();
  }
}
