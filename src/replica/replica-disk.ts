import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { JournalRecord, Region } from '../disk/index.ts';
import { HavenError } from '../errors/index.ts';
import type { SyncStart } from '../replication/replica-sink.ts';
import { syncDirectory, writeFileAtomic } from '../storage/atomic-file.ts';
import { GroupCommit } from '../storage/group-commit.ts';
import { allocationMapPath, createSparseImage } from '../storage/index.ts';
import { PRIVATE_DIR_MODE } from '../storage/private-files.ts';
import { BaseImage, readFully } from './base-image.ts';
import { type OverlayOptions, OverlayView } from './overlay-view.ts';
import { PointView } from './point-view.ts';
import { formatRecoveryPointRef } from './recovery-point-ref.ts';
import { mergeRegions, regionBytes } from './regions.ts';
import { newMeta, type ReplicaMeta, readMeta, type SyncState, writeMeta } from './replica-meta.ts';
import { type RecoveryPointInfo, type RetentionPolicy, retainedPoints } from './retention.ts';
import { type IndexedRecord, SegmentLog } from './segment-log.ts';

export interface ReplicaDiskOptions {
  segmentBytes: number;
  /** Most record bytes one merge step applies (each step is its own crash-safe transaction). */
  mergeStepBytes: number;
  retention: RetentionPolicy;
}

export interface ReplicaDiskStatus {
  diskKey: string;
  sizeBytes: number;
  baseSeq: number;
  durableSeq: number;
  /** Bytes of the segment log (retained records) on disk. */
  logBytes: number;
  syncing: SyncState | null;
  openViews: number;
  /** Failed over: records from the old primary are refused until `consolidateView`. */
  sealed: boolean;
}

/** A writable view kept on disk (`views/<viewId>/view.json`). */
export interface KeptView {
  viewId: string;
  seq: number;
  /** Bitmap granularity of the view's write journal (views made before it was recorded: 64 KiB). */
  regionSize: number;
  /** Bytes the primary wrote after the view's point that the replica held when the view was made. */
  divergedBytes: number;
}

/** Overlays made now track diverged regions at 4 KiB: a guest's small writes are not inflated 16-fold. */
const VIEW_REGION_SIZE = 4096;

/** Moves a file (same file system: a rename, no copy); false when it is not there. */
async function moveFile(from: string, to: string): Promise<boolean> {
  try {
    await rename(from, to);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return false;
    if (code === 'EXDEV') {
      throw new HavenError(
        'conflict',
        `cannot move '${from}' to '${to}' without copying it: they are on different file systems; ` +
          "keep disk images on the file system of the host's data directory",
        { from, to },
      );
    }
    throw e;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/**
 * Moves an image (and its allocation map) from `from` to `to`; redoing it
 * after a crash finishes whatever part was left. Fails if neither place has it.
 */
export async function moveImage(from: string, to: string): Promise<void> {
  await moveFile(allocationMapPath(from), allocationMapPath(to));
  if (!(await moveFile(from, to)) && !(await exists(to))) {
    throw new HavenError('not_found', `disk image '${from}' does not exist (nor does '${to}')`, {
      kind: 'image',
      id: from,
    });
  }
  await syncDirectory(dirname(to));
  await syncDirectory(dirname(from));
}

const KINDS: readonly string[] = ['write', 'trim', 'zero', 'flush', 'marker'];

function isPointRecord(r: IndexedRecord): boolean {
  return (
    r.kind === 'flush' ||
    (r.kind === 'marker' && (r.marker?.type === 'app-consistent' || r.marker?.type === 'group'))
  );
}

/** A sync's copied data is written back in steps of this many bytes while it arrives. */
const COPY_FLUSH_BYTES = 8 << 20;

/**
 * One protected disk's replica: base image, segment log of retained records, and
 * the catalog of recovery points derived from them. Every change of state goes
 * through `#serial`, one at a time; each step that moves the base persists an
 * intent first so that a crash at any moment is redone on open.
 */
export class ReplicaDisk {
  readonly diskKey: string;
  readonly dir: string;
  readonly #options: ReplicaDiskOptions;
  #meta: ReplicaMeta;
  readonly #base: BaseImage;
  readonly #log: SegmentLog;
  /** Records (baseSeq, durable], consecutive. */
  #index: IndexedRecord[];
  #cumAtBase: number;
  /** First sequence that can be a point (null: none yet, e.g. during a sync). */
  #pointsFrom: number | null = null;
  /** Pins of open views and kept writable views: merges never pass the lowest. */
  readonly #pins = new Map<number, number>();
  #chain: Promise<unknown> = Promise.resolve();
  readonly #syncCommit: GroupCommit;
  /** Records written to the log but not yet synced, per append in order: they join the index once durable. */
  #pending: { ticket: number; records: IndexedRecord[] }[] = [];
  #tickets = 0;
  /** One fdatasync of the log for every append written while the previous one ran. */
  readonly #logCommit: GroupCommit;
  /** Copied bytes written since a write-back of the base was last started. */
  #unflushedCopy = 0;
  /** A write-back of copied data failed: the sync cannot complete (the sender redoes it). */
  #copyFlushFailed: unknown = null;
  /** Ranges the current sync wrote into an adopted base, when this process saw it from its start. */
  #syncWrites: Region[] | null = null;
  /** A failed log sync: written records may be lost, so nothing more is accepted until reopened. */
  #syncFailed: unknown = null;
  #closed = false;
  /** Changes with every append and metadata change: invalidates `#current`. */
  #generation = 0;
  /** The replica's current contents (for hash compares), rebuilt when `#generation` moves. */
  #current: { generation: number; view: PointView } | null = null;

  private constructor(
    dir: string,
    meta: ReplicaMeta,
    base: BaseImage,
    log: SegmentLog,
    index: IndexedRecord[],
    cumAtBase: number,
    options: ReplicaDiskOptions,
  ) {
    this.dir = dir;
    this.diskKey = meta.diskKey;
    this.#meta = meta;
    this.#base = base;
    this.#log = log;
    this.#index = index;
    this.#cumAtBase = cumAtBase;
    this.#options = options;
    this.#syncCommit = new GroupCommit(() => base.sync());
    this.#logCommit = new GroupCommit(() => log.sync());
    this.#recomputePointsFrom();
  }

  static async create(dir: string, diskKey: string, sizeBytes: number, options: ReplicaDiskOptions) {
    await mkdir(join(dir, 'segments'), { recursive: true, mode: PRIVATE_DIR_MODE });
    await rm(join(dir, 'base.img'), { force: true });
    await rm(join(dir, 'base.img.haven-alloc'), { force: true });
    await createSparseImage(join(dir, 'base.img'), sizeBytes);
    // The metadata is written last: a directory without it is an unfinished creation.
    await writeMeta(join(dir, 'meta.json'), newMeta(diskKey, sizeBytes));
    return ReplicaDisk.open(dir, options);
  }

  /** Opens a replica, finishing whatever a crash interrupted (a merge, a commit's truncation). */
  static async open(dir: string, options: ReplicaDiskOptions): Promise<ReplicaDisk> {
    let meta = await readMeta(join(dir, 'meta.json'));
    if (meta === null) throw new HavenError('not_found', `no replica in '${dir}'`, { dir });
    if (meta.adopting) {
      await moveImage(meta.adopting, join(dir, 'base.img'));
      meta = { ...meta, adopting: null };
      await writeMeta(join(dir, 'meta.json'), meta);
    }
    if (meta.consolidatedView && !meta.consolidating) {
      await rm(join(dir, 'views', meta.consolidatedView), { recursive: true, force: true });
    }
    const base = await BaseImage.open(join(dir, 'base.img'), meta.sizeBytes);
    // Segments are indexed from the base the merge started from; a redo re-applies them.
    const { log, records, cumAtBase } = await SegmentLog.open(
      join(dir, 'segments'),
      meta.baseSeq,
      options.segmentBytes,
    );
    const disk = new ReplicaDisk(dir, meta, base, log, records, cumAtBase, options);
    for (const { seq } of await disk.#keptViews()) disk.#pin(seq);
    const intent = meta.mergeIntent;
    if (intent !== null) await disk.#mergeStep(intent.through, intent.point, intent.pointsOpen);
    if (meta.discardAfter !== null) await disk.#discardAfter(meta.discardAfter);
    if (meta.consolidating) await disk.#finishConsolidateView();
    return disk;
  }

  /**
   * Makes a replica whose base is an existing image, moved in (reprotect to
   * the original machine: no data is copied). Records resume after
   * `durableSeq`; no recovery point exists until the first sync completes,
   * unless `consistent`: the image is a whole, consistent disk (a copy of a
   * stopped machine's image) that the records continue from directly.
   */
  static async adopt(
    dir: string,
    diskKey: string,
    sizeBytes: number,
    imagePath: string,
    durableSeq: number,
    options: ReplicaDiskOptions,
    consistent = false,
  ): Promise<ReplicaDisk> {
    await rm(dir, { recursive: true, force: true });
    await mkdir(join(dir, 'segments'), { recursive: true, mode: PRIVATE_DIR_MODE });
    // The metadata names the image before it moves: a crash mid-move is finished on open.
    await writeMeta(join(dir, 'meta.json'), {
      ...newMeta(diskKey, sizeBytes),
      baseSeq: durableSeq,
      pointFloor: durableSeq + 1,
      sync: consistent ? null : { id: 'adopted', kind: 'resync', fromSeq: durableSeq + 1 },
      adopting: imagePath,
      adoptedFrom: imagePath,
      written: [],
    });
    return ReplicaDisk.open(dir, options);
  }

  get adoptedFrom(): string | null {
    return this.#meta.adoptedFrom ?? null;
  }

  get sizeBytes(): number {
    return this.#meta.sizeBytes;
  }

  get baseSeq(): number {
    return this.#meta.baseSeq;
  }

  get durableSeq(): number {
    return this.#index.at(-1)?.seq ?? this.#meta.baseSeq;
  }

  status(): ReplicaDiskStatus {
    let openViews = 0;
    for (const n of this.#pins.values()) openViews += n;
    return {
      diskKey: this.diskKey,
      sizeBytes: this.sizeBytes,
      baseSeq: this.baseSeq,
      durableSeq: this.durableSeq,
      logBytes: this.#log.storedBytes,
      syncing: this.#meta.sync,
      openViews,
      sealed: this.#meta.sealed === true,
    };
  }

  /** Runs `fn` after every earlier change, once every record written so far is durable and indexed. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    return this.#inOrder(async () => {
      await this.#settle(this.#tickets);
      return fn();
    });
  }

  #inOrder<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(() => {
      if (this.#closed) {
        throw new HavenError('operation_not_allowed', `replica '${this.diskKey}' is closed`, {
          diskKey: this.diskKey,
        });
      }
      return fn();
    });
    this.#chain = run.catch(() => {});
    return run;
  }

  /** Syncs the log and moves the records of appends up to `ticket` into the index. */
  async #settle(ticket: number): Promise<void> {
    if (this.#syncFailed !== null) throw this.#syncFailed;
    if ((this.#pending[0]?.ticket ?? Number.POSITIVE_INFINITY) > ticket) return;
    try {
      // Covers every write that finished before this call.
      await this.#logCommit.sync();
    } catch (e) {
      this.#syncFailed ??= e;
      throw e;
    }
    while ((this.#pending[0]?.ticket ?? Number.POSITIVE_INFINITY) <= ticket) {
      const done = this.#pending.shift() as { records: IndexedRecord[] };
      this.#generation++;
      for (const r of done.records) {
        this.#index.push(r);
        if (
          this.#pointsFrom === null &&
          this.#meta.sync === null &&
          r.kind === 'flush' &&
          r.seq >= this.#meta.pointFloor
        ) {
          this.#pointsFrom = r.seq;
        }
      }
    }
  }

  async #saveMeta(change: Partial<ReplicaMeta>): Promise<void> {
    const next = { ...this.#meta, ...change };
    await writeMeta(join(this.dir, 'meta.json'), next);
    this.#meta = next;
    this.#generation++;
    // Merges and truncations change metadata: let go of the segments the old contents held.
    const current = this.#current;
    this.#current = null;
    await current?.view.close();
  }

  #recomputePointsFrom(): void {
    const { sync, pointFloor, pointsOpen, baseSeq } = this.#meta;
    this.#pointsFrom = null;
    if (sync !== null) return;
    if (pointsOpen) {
      this.#pointsFrom = baseSeq;
      return;
    }
    for (const r of this.#index) {
      if (r.kind === 'flush' && r.seq >= pointFloor) {
        this.#pointsFrom = r.seq;
        return;
      }
    }
  }

  // --- ReplicaSink -----------------------------------------------------------

  /**
   * Stores records durably; resolves with the durable sequence. Appends are
   * written in call order; one still syncing does not hold up the next one's
   * write, and those written meanwhile share the next sync.
   */
  async append(records: readonly JournalRecord[]): Promise<number> {
    const ticket = await this.#inOrder(async () => {
      if (this.#syncFailed !== null) throw this.#syncFailed;
      const written = this.#pending.at(-1)?.records.at(-1)?.seq ?? this.durableSeq;
      const fresh = records.filter((r) => r.seq > written);
      // Records already written by an earlier append are durable once its sync is.
      if (fresh.length === 0) return this.#pending.at(-1)?.ticket ?? 0;
      this.#checkNotSealed();
      fresh.forEach((r, i) => {
        this.#validate(r, written + 1 + i);
      });
      const ticket = ++this.#tickets;
      this.#pending.push({ ticket, records: await this.#log.write(fresh) });
      return ticket;
    });
    await this.#settle(ticket);
    return this.durableSeq;
  }

  #checkNotSealed(): void {
    if (this.#meta.sealed) {
      throw new HavenError(
        'conflict',
        `replica '${this.diskKey}' was failed over: its machine now runs from a view of it, so records from the ` +
          'old primary are refused (reprotect replicates the other way; commit after failback lifts this)',
        { diskKey: this.diskKey, sealed: true },
      );
    }
  }

  /** Refuses records from the old primary from now on (failover), or accepts them again. */
  seal(sealed: boolean): Promise<void> {
    return this.#serial(async () => {
      if ((this.#meta.sealed === true) !== sealed) await this.#saveMeta({ sealed });
    });
  }

  /** Merged byte ranges written, trimmed or zeroed by the retained records after `seq`. */
  regionsAfter(seq: number): Region[] {
    return mergeRegions(
      this.#index
        .filter((r) => r.seq > seq && (r.kind === 'write' || r.kind === 'trim' || r.kind === 'zero'))
        .map((r) => ({ offset: r.offset, length: r.length })),
    );
  }

  /** The replica's current contents (base and every record), for a hash-compare resync. */
  read(offset: number, length: number): Promise<Buffer> {
    return this.#serial(async () => {
      if (this.#current?.generation !== this.#generation) {
        await this.#current?.view.close();
        this.#current = {
          generation: this.#generation,
          view: new PointView(`${this.diskKey}@current`, this.durableSeq, this.#base, this.#index, () => {}),
        };
      }
      return this.#current.view.read(offset, length);
    });
  }

  #validate(r: JournalRecord, expected: number): void {
    const bad = (why: string, extra: Record<string, unknown> = {}) =>
      new HavenError('bad_request', `record ${r.seq} for replica '${this.diskKey}' ${why}`, {
        diskKey: this.diskKey,
        seq: r.seq,
        ...extra,
      });
    if (r.seq !== expected) {
      throw new HavenError(
        'conflict',
        `replica '${this.diskKey}' holds records through ${expected - 1}; record ${r.seq} would leave a gap ` +
          '(records must follow in order; a gap needs a sync)',
        { diskKey: this.diskKey, durableSeq: expected - 1, seq: r.seq },
      );
    }
    if (!KINDS.includes(r.kind)) throw bad(`has an unknown kind '${r.kind}'`);
    if (!Number.isSafeInteger(r.timeMs) || r.timeMs < 0) throw bad('has no valid time');
    if (r.kind === 'write' || r.kind === 'trim' || r.kind === 'zero') {
      if (
        !Number.isSafeInteger(r.offset) ||
        !Number.isSafeInteger(r.length) ||
        r.offset < 0 ||
        r.length < 0 ||
        r.offset + r.length > this.sizeBytes
      ) {
        throw bad(`covers ${r.length} bytes at ${r.offset}, outside the ${this.sizeBytes}-byte disk`);
      }
    }
    if (r.kind === 'write' && (!Buffer.isBuffer(r.data) || r.data.length !== r.length)) {
      throw bad(`is a write of ${r.length} bytes carrying ${r.data?.length ?? 'no'} bytes of data`);
    }
    if (r.kind === 'marker' && (typeof r.marker?.id !== 'string' || typeof r.marker.type !== 'string')) {
      throw bad('is a marker without a type and id');
    }
  }

  beginSync(sync: SyncStart): Promise<void> {
    return this.#serial(async () => {
      if (this.#meta.sync?.id === sync.id && this.#meta.sync.fromSeq === sync.fromSeq) {
        await this.#base.beginCopy();
        return;
      }
      this.#checkNotSealed();
      if (!Number.isSafeInteger(sync.fromSeq) || sync.fromSeq < 0) {
        throw new HavenError('bad_request', `sync '${sync.id}' needs a non-negative fromSeq`, {
          fromSeq: sync.fromSeq,
        });
      }
      if (this.#pins.size > 0) {
        throw new HavenError(
          'conflict',
          `replica '${this.diskKey}' has open or kept views; a sync rewrites the base, so close or discard them first`,
          { diskKey: this.diskKey, pinnedSeqs: [...this.#pins.keys()] },
        );
      }
      this.#copyFlushFailed = null;
      this.#unflushedCopy = 0;
      // Only an adopted base keeps what a sync wrote (#writtenBySync): a plain replica collects nothing.
      this.#syncWrites = this.#meta.written === undefined ? null : [];
      // The copy overwrites the base: bring it up to just before the sync, and drop the rest. The
      // base is rewritten from here on: its map is marked unclean meanwhile (merged writes wait for that).
      await Promise.all([
        this.#base.beginCopy(),
        this.#mergeThrough(Math.min(this.durableSeq, sync.fromSeq - 1), true),
      ]);
      await this.#log.truncateAfter(sync.fromSeq - 1, null);
      this.#index = [];
      this.#cumAtBase = 0;
      // The base is in flux until the sync completes; records resume right after it.
      await this.#saveMeta({
        baseSeq: sync.fromSeq - 1,
        basePoint: null,
        pointsOpen: false,
        sync: { id: sync.id, kind: sync.kind, fromSeq: sync.fromSeq },
        // Before the copy writes: a crash mid-sync still knows what it may have written.
        ...(this.#meta.written === undefined
          ? {}
          : { syncMayWrite: sync.regions && mergeRegions(sync.regions) }),
      });
      this.#recomputePointsFrom();
    });
  }

  #checkSync(syncId: string): void {
    if (this.#meta.sync?.id !== syncId) {
      throw new HavenError(
        'conflict',
        `sync '${syncId}' is not in progress on replica '${this.diskKey}' (current: ${this.#meta.sync?.id ?? 'none'})`,
        { diskKey: this.diskKey, syncId, current: this.#meta.sync?.id ?? null },
      );
    }
  }

  /**
   * Copied data goes straight to the base: no point exists until the sync
   * completes. Not durable on return: `completeSync` makes the whole copy
   * durable at once, and a sync interrupted before it is redone from the start
   * under a new id.
   */
  async writeSyncData(syncId: string, offset: number, data: Buffer | null, length: number): Promise<void> {
    this.#checkSync(syncId);
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > this.sizeBytes ||
      (data !== null && data.length !== length)
    ) {
      throw new HavenError(
        'bad_request',
        `sync data of ${length} bytes at ${offset} does not fit the ${this.sizeBytes}-byte replica '${this.diskKey}'`,
        { offset, length, size: this.sizeBytes },
      );
    }
    if (length === 0) return;
    const last = this.#syncWrites?.at(-1);
    // A copy goes mostly in order: extending the last range keeps the list as short as the gaps.
    if (last && last.offset + last.length === offset) last.length += length;
    else this.#syncWrites?.push({ offset, length });
    if (data === null) await this.#base.zero(offset, length);
    else {
      await this.#base.reserve([{ offset, length }]);
      await this.#base.write(offset, data);
      this.#unflushedCopy += length;
    }
    if (this.#unflushedCopy >= COPY_FLUSH_BYTES) {
      this.#unflushedCopy = 0;
      // Writes the copy back while more arrives: the sync at its completion then has little left to do.
      this.#syncCommit.sync().catch((e: unknown) => {
        this.#copyFlushFailed ??= e;
      });
    }
  }

  completeSync(syncId: string, throughSeq: number): Promise<void> {
    return this.#serial(async () => {
      if (this.#meta.sync === null && this.#meta.pointFloor === throughSeq) return;
      this.#checkSync(syncId);
      await this.#syncCommit.sync();
      // Pages whose write-back failed may read back as written: only a new copy can be trusted.
      if (this.#copyFlushFailed !== null) throw this.#copyFlushFailed;
      // The copy is durable: the map saved clean and the sync's end are independent of each other.
      await Promise.all([
        this.#base.endCopy(),
        this.#saveMeta({ sync: null, pointFloor: throughSeq, ...this.#writtenBySync() }),
      ]);
      this.#syncWrites = null;
      this.#recomputePointsFrom();
    });
  }

  // --- Recovery points ------------------------------------------------------

  #info(r: IndexedRecord, sizeBytes: number): RecoveryPointInfo {
    return {
      id: formatRecoveryPointRef({ kind: 'disk', diskKey: this.diskKey, seq: r.seq }),
      diskKey: this.diskKey,
      seq: r.seq,
      timeMs: r.timeMs,
      time: new Date(r.timeMs).toISOString(),
      type: r.marker?.type === 'app-consistent' ? 'app-consistent' : 'crash-consistent',
      groupPointId: r.marker?.groupPointId ?? null,
      label: r.marker?.label ?? null,
      sizeBytes,
    };
  }

  /** Every point the segment log holds (before retention), in sequence order. */
  #candidates(): { point: RecoveryPointInfo; cum: number }[] {
    const out: { point: RecoveryPointInfo; cum: number }[] = [];
    const basePoint = this.#meta.basePoint;
    if (basePoint !== null) out.push({ point: basePoint, cum: this.#cumAtBase });
    const from = this.#pointsFrom;
    if (from === null) return out;
    for (const r of this.#index) {
      if (r.seq >= from && isPointRecord(r)) out.push({ point: this.#info(r, 0), cum: r.cumBytes });
    }
    return out;
  }

  /** The recovery points kept at `nowMs`, oldest first. */
  points(nowMs: number, policy = this.#policy()): RecoveryPointInfo[] {
    return retainedPoints(this.#sizedCandidates(), nowMs, policy);
  }

  /** Candidates sized as the record bytes since the previous candidate (or the base). */
  #sizedCandidates(): RecoveryPointInfo[] {
    let prevCum = this.#cumAtBase;
    return this.#candidates().map((c) => {
      const sized = c.point === this.#meta.basePoint ? c.point : { ...c.point, sizeBytes: c.cum - prevCum };
      prevCum = c.cum;
      return sized;
    });
  }

  #policy(): RetentionPolicy {
    return this.#meta.retention ?? this.#options.retention;
  }

  setRetention(policy: RetentionPolicy | null): Promise<void> {
    return this.#serial(() => this.#saveMeta({ retention: policy }));
  }

  // --- Merging --------------------------------------------------------------

  #minPin(): number {
    let min = Number.POSITIVE_INFINITY;
    for (const seq of this.#pins.keys()) min = Math.min(min, seq);
    return min;
  }

  /**
   * Merges what fell out of the retention window into the base: records up to
   * the oldest point still kept (never past a view's pin). Returns the new base sequence.
   */
  runRetention(nowMs: number): Promise<number> {
    return this.#serial(async () => {
      const oldest = this.points(nowMs)[0];
      if (oldest === undefined || this.#meta.sync !== null) return this.baseSeq;
      const target = Math.min(oldest.seq, this.#minPin());
      await this.#mergeThrough(target, false);
      return this.baseSeq;
    });
  }

  #candidateAt(seq: number): RecoveryPointInfo | null {
    return this.#sizedCandidates().find((p) => p.seq === seq) ?? null;
  }

  /**
   * An adopted base's written ranges once the sync completes: exactly what it
   * wrote when this process saw the whole sync, else what it may have written.
   */
  #writtenBySync(): Pick<ReplicaMeta, 'written' | 'syncMayWrite'> {
    const written = this.#meta.written;
    if (written === undefined) return {};
    const synced = this.#syncWrites ?? this.#meta.syncMayWrite ?? [{ offset: 0, length: this.sizeBytes }];
    return { written: mergeRegions([...written, ...synced]), syncMayWrite: null };
  }

  /** Applies records (baseSeq, target] onto the base in bounded, individually crash-safe steps. */
  async #mergeThrough(target: number, dropPoints: boolean): Promise<void> {
    while (this.baseSeq < target && this.#index.length > 0) {
      let end = this.baseSeq;
      let bytes = 0;
      for (const r of this.#index) {
        const cost = r.kind === 'write' ? r.length : 0;
        if (r.seq > target || (bytes > 0 && bytes + cost > this.#options.mergeStepBytes)) break;
        end = r.seq;
        bytes += cost;
      }
      const point = dropPoints ? null : this.#candidateAt(end);
      const pointsOpen = !dropPoints && this.#pointsFrom !== null && end >= this.#pointsFrom;
      await this.#saveMeta({ mergeIntent: { through: end, point, pointsOpen } });
      await this.#mergeStep(end, point, pointsOpen);
    }
  }

  /** One merge transaction (also the redo after a crash): apply, sync, advance the base, delete segments. */
  async #mergeStep(end: number, point: RecoveryPointInfo | null, pointsOpen: boolean): Promise<void> {
    const records = this.#index.filter((r) => r.seq <= end);
    await this.#base.reserve(records.filter((r) => r.kind === 'write'));
    const buf = Buffer.allocUnsafe(Math.min(this.#options.mergeStepBytes, 4 << 20));
    for (const r of records) {
      if (r.kind === 'write') {
        // An earlier trim in this step may have turned its chunks into holes again.
        await this.#base.reserve([r]);
        for (let done = 0; done < r.length; done += buf.length) {
          const n = Math.min(buf.length, r.length - done);
          await readFully(r.segment.fh, buf, 0, r.dataPos + done, n);
          await this.#base.write(r.offset + done, buf.subarray(0, n));
        }
      } else if (r.kind === 'trim' || r.kind === 'zero') {
        await this.#base.zero(r.offset, r.length);
      }
    }
    await this.#base.sync();
    const lastMerged = records.at(-1);
    if (lastMerged !== undefined) this.#cumAtBase = lastMerged.cumBytes;
    const written = this.#meta.written;
    await this.#saveMeta({
      baseSeq: Math.max(this.#meta.baseSeq, end),
      basePoint: point,
      pointsOpen,
      mergeIntent: null,
      ...(written === undefined
        ? {}
        : {
            written: mergeRegions([
              ...written,
              ...records
                .filter((r) => r.kind === 'write' || r.kind === 'trim' || r.kind === 'zero')
                .map((r) => ({ offset: r.offset, length: r.length })),
            ]),
          }),
    });
    this.#index = this.#index.slice(records.length);
    await this.#log.deleteThrough(end);
  }

  /** Drops every record after `seq`, all older ones being merged (the end of a commit). */
  async #discardAfter(seq: number): Promise<void> {
    await this.#log.truncateAfter(seq, null);
    this.#index = [];
    await this.#saveMeta({ discardAfter: null });
  }

  // --- Views ----------------------------------------------------------------

  #pin(seq: number): void {
    this.#pins.set(seq, (this.#pins.get(seq) ?? 0) + 1);
  }

  #unpin(seq: number): void {
    const n = (this.#pins.get(seq) ?? 0) - 1;
    if (n <= 0) this.#pins.delete(seq);
    else this.#pins.set(seq, n);
  }

  /** Checks that `seq` can be viewed: inside the segment log and not inside a sync. */
  #checkViewable(seq: number): void {
    const from = this.#pointsFrom;
    const ok =
      Number.isSafeInteger(seq) &&
      this.#meta.sync === null &&
      from !== null &&
      seq >= Math.max(from, this.baseSeq) &&
      seq <= this.durableSeq;
    if (!ok) {
      throw new HavenError(
        'conflict',
        `replica '${this.diskKey}' cannot show sequence ${seq}: it holds consistent data from ` +
          `${from === null ? 'no point yet' : Math.max(from, this.baseSeq)} through ${this.durableSeq}` +
          (this.#meta.sync === null ? '' : ` (sync '${this.#meta.sync.id}' in progress)`),
        { diskKey: this.diskKey, seq, baseSeq: this.baseSeq, durableSeq: this.durableSeq },
      );
    }
  }

  /** A read-only view at `seq`; pinned until closed. */
  openView(seq: number, name: string): Promise<PointView> {
    return this.#serial(async () => this.#view(seq, name));
  }

  #view(seq: number, name: string): PointView {
    this.#checkViewable(seq);
    const records = this.#index.slice(0, seq - this.baseSeq);
    this.#pin(seq);
    return new PointView(name, seq, this.#base, records, () => this.#unpin(seq));
  }

  #viewsDir(): string {
    return join(this.dir, 'views');
  }

  async #keptViews(): Promise<KeptView[]> {
    let names: string[];
    try {
      names = await readdir(this.#viewsDir());
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const out: KeptView[] = [];
    for (const viewId of names) {
      try {
        const kept = JSON.parse(await readFile(join(this.#viewsDir(), viewId, 'view.json'), 'utf8'));
        out.push({
          viewId,
          seq: kept.seq,
          regionSize: kept.regionSize ?? 65536,
          divergedBytes: kept.divergedBytes ?? 0,
        });
      } catch (e) {
        // A view whose creation did not finish: nothing was written through it.
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        await rm(join(this.#viewsDir(), viewId), { recursive: true, force: true });
      }
    }
    return out;
  }

  /**
   * A writable view at `seq` kept under `viewId` (reopening the same id resumes
   * its overlay). Its pin lasts until `discardView`, across restarts.
   */
  openWritableView(seq: number, viewId: string, options: OverlayOptions, seal = false): Promise<OverlayView> {
    return this.#serial(async () => {
      if (!/^[\w.-]{1,128}$/.test(viewId)) {
        throw new HavenError(
          'validation_failed',
          `view id '${viewId}' must be 1-128 letters, digits, '.', '_' or '-'`,
        );
      }
      const kept = (await this.#keptViews()).find((v) => v.viewId === viewId);
      if (kept !== undefined && kept.seq !== seq) {
        throw new HavenError(
          'conflict',
          `writable view '${viewId}' of replica '${this.diskKey}' is at sequence ${kept.seq}, not ${seq}`,
          { viewId, seq: kept.seq },
        );
      }
      const dir = join(this.#viewsDir(), viewId);
      const regionSize = kept?.regionSize ?? options.journalRegionSize ?? VIEW_REGION_SIZE;
      const lower = this.#view(seq, `${this.diskKey}#${viewId}`);
      let view: OverlayView;
      try {
        if (kept === undefined) await rm(dir, { recursive: true, force: true });
        view = await OverlayView.open(`${this.diskKey}#${viewId}`, lower, dir, {
          ...options,
          journalRegionSize: regionSize,
        });
      } catch (e) {
        await lower.close();
        throw e;
      }
      if (kept !== undefined) return view;
      try {
        if (seal) await this.#saveMeta({ sealed: true });
        // What the primary wrote after the point must be copied back on reprotect: the view's
        // journal keeps it as dirty regions (commit drops these records from the replica).
        const diverged = this.regionsAfter(seq);
        await Promise.all(diverged.map((r) => view.journal.markDirty([r])));
        // view.json last: a directory without it is an unfinished view, removed on open.
        await writeFileAtomic(
          join(dir, 'view.json'),
          `${JSON.stringify({ seq, regionSize, divergedBytes: regionBytes(diverged) })}\n`,
        );
      } catch (e) {
        await view.close();
        await rm(dir, { recursive: true, force: true });
        throw e;
      }
      this.#pin(seq);
      return view;
    });
  }

  /** A kept writable view's record, or null. */
  async keptView(viewId: string): Promise<KeptView | null> {
    return (await this.#keptViews()).find((v) => v.viewId === viewId) ?? null;
  }

  /**
   * The base is moved out to `imagePath` (complete failover after failback):
   * every record is merged into it first. The caller closes the replica and
   * finishes with `finishRestore`, which is also redone on open after a crash.
   * Answers the ranges written into an adopted base since its adoption (null
   * for a base that was not adopted).
   */
  prepareRestore(imagePath: string): Promise<Region[] | null> {
    return this.#serial(async () => {
      if (this.#meta.restoreTo === imagePath) return this.#meta.written ?? null;
      if (this.#pins.size > 0) {
        throw new HavenError(
          'conflict',
          `replica '${this.diskKey}' has open or kept views; close or discard them before consolidating it`,
          { diskKey: this.diskKey, pinnedSeqs: [...this.#pins.keys()] },
        );
      }
      if (this.#meta.sync !== null) {
        throw new HavenError(
          'conflict',
          `replica '${this.diskKey}' is inside sync '${this.#meta.sync.id}': it is not a consistent disk yet; ` +
            'let replication finish its sync (or run a full resync) first',
          { diskKey: this.diskKey, syncing: this.#meta.sync },
        );
      }
      await this.#mergeThrough(this.durableSeq, true);
      await this.#saveMeta({ restoreTo: imagePath });
      return this.#meta.written ?? null;
    });
  }

  /**
   * Merges a kept writable view into the base (commit after failback): the
   * replica becomes the view's contents, its records and the view are dropped,
   * and records resume after `durableSeq` (the new primary journal's start).
   * Close the view first; other views must be gone too (the base changes).
   */
  consolidateView(viewId: string, durableSeq: number, nowMs: number): Promise<void> {
    return this.#serial(async () => {
      const kept = (await this.#keptViews()).find((v) => v.viewId === viewId);
      if (kept === undefined) {
        if (this.#meta.consolidatedView === viewId) return;
        throw new HavenError(
          'not_found',
          `writable view '${viewId}' of replica '${this.diskKey}' does not exist`,
          {
            kind: 'view',
            id: viewId,
          },
        );
      }
      if (!Number.isSafeInteger(durableSeq) || durableSeq < 0) {
        throw new HavenError('bad_request', `durable sequence ${durableSeq} is not a non-negative integer`, {
          field: 'durableSeq',
        });
      }
      const pinned = [...this.#pins.entries()];
      if (pinned.length !== 1 || pinned[0]?.[0] !== kept.seq || pinned[0]?.[1] !== 1) {
        throw new HavenError(
          'conflict',
          `replica '${this.diskKey}' has other views, or view '${viewId}' is still open; close them before ` +
            'merging the view into the replica',
          { diskKey: this.diskKey, openViews: this.status().openViews },
        );
      }
      if (this.#meta.sync !== null) {
        throw new HavenError('conflict', `replica '${this.diskKey}' is inside a sync`, {
          diskKey: this.diskKey,
        });
      }
      if (this.baseSeq < kept.seq) await this.#mergeThrough(kept.seq, true);
      if (this.durableSeq > kept.seq) {
        await this.#saveMeta({ discardAfter: kept.seq });
        await this.#discardAfter(kept.seq);
      }
      await this.#saveMeta({ consolidating: { viewId, seq: kept.seq, durableSeq, timeMs: nowMs } });
      await this.#finishConsolidateView();
    });
  }

  /** Copies the view's changed chunks into the base (idempotent: redone whole after a crash), then switches. */
  async #finishConsolidateView(): Promise<void> {
    const c = this.#meta.consolidating;
    if (!c) return;
    const dir = join(this.#viewsDir(), c.viewId);
    const kept = (await this.#keptViews()).find((v) => v.viewId === c.viewId);
    if (kept !== undefined) {
      // Nothing reads the base at the point but this overlay, whose map is already replayed.
      const lower = new PointView(`${this.diskKey}#${c.viewId}`, c.seq, this.#base, [], () => {});
      const overlay = await OverlayView.open(`${this.diskKey}#${c.viewId}`, lower, dir, {
        journalRegionSize: kept.regionSize,
      });
      try {
        const runs = overlay.changedRuns();
        await this.#base.reserve(runs.filter((r) => !r.zero));
        const step = 4 << 20;
        for (const r of runs) {
          if (r.zero) {
            await this.#base.zero(r.offset, r.length);
            continue;
          }
          for (let at = r.offset; at < r.offset + r.length; at += step) {
            const n = Math.min(step, r.offset + r.length - at);
            await this.#base.write(at, await overlay.read(at, n));
          }
        }
        await this.#base.sync();
      } finally {
        await overlay.close();
      }
    }
    await this.#log.truncateAfter(-1, null);
    this.#index = [];
    this.#cumAtBase = 0;
    const point: RecoveryPointInfo = {
      id: formatRecoveryPointRef({ kind: 'disk', diskKey: this.diskKey, seq: c.durableSeq }),
      diskKey: this.diskKey,
      seq: c.durableSeq,
      timeMs: c.timeMs,
      time: new Date(c.timeMs).toISOString(),
      type: 'crash-consistent',
      groupPointId: null,
      label: `view ${c.viewId}`,
      sizeBytes: 0,
    };
    await this.#saveMeta({
      baseSeq: c.durableSeq,
      basePoint: point,
      pointsOpen: true,
      pointFloor: 0,
      mergeIntent: null,
      discardAfter: null,
      sealed: false,
      consolidating: null,
      consolidatedView: c.viewId,
    });
    await rm(dir, { recursive: true, force: true });
    if (kept !== undefined) this.#unpin(c.seq);
    this.#recomputePointsFrom();
  }

  /** Deletes a writable view's overlay and write journal and releases its pin (close it first). */
  discardView(viewId: string): Promise<void> {
    return this.#serial(async () => {
      const kept = (await this.#keptViews()).find((v) => v.viewId === viewId);
      if (kept === undefined) return;
      await rm(join(this.#viewsDir(), viewId), { recursive: true, force: true });
      this.#unpin(kept.seq);
    });
  }

  // --- Commit ---------------------------------------------------------------

  /** Keeps the point at `seq` as the disk's state and deletes every other point. */
  commit(seq: number): Promise<void> {
    return this.#serial(async () => {
      const others = [...this.#pins.keys()].filter((s) => s !== seq);
      if (others.length > 0) {
        throw new HavenError(
          'conflict',
          `replica '${this.diskKey}' has views open at other points (${others.join(', ')}); close them before committing`,
          { diskKey: this.diskKey, pinnedSeqs: others },
        );
      }
      this.#checkViewable(seq);
      if (this.#candidateAt(seq) === null) {
        throw new HavenError(
          'conflict',
          `sequence ${seq} of replica '${this.diskKey}' is not a recovery point`,
          {
            diskKey: this.diskKey,
            seq,
          },
        );
      }
      await this.#mergeThrough(seq, false);
      // Records after the point are dropped: the replica now stands at the committed point,
      // and the old primary's records are refused from now on (the machine runs from the view).
      await this.#saveMeta({ discardAfter: seq, sealed: true });
      await this.#discardAfter(seq);
    });
  }

  async close(): Promise<void> {
    await this.#serial(async () => {
      this.#closed = true;
      await this.#current?.view.close();
      this.#current = null;
    }).catch(() => {});
    await this.#syncCommit.idle();
    await this.#logCommit.idle();
    await this.#log.close();
    await this.#base.close();
  }
}
