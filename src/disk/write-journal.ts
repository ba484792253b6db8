import { type FileHandle, mkdir, open, readdir, readFile, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { HavenError } from '../errors/index.ts';
import { syncDirectory } from '../storage/atomic-file.ts';
import { FileIo, SyncBudget } from '../storage/file-io.ts';
import { type FileSync, realFileSync } from '../storage/file-sync.ts';
import { GroupCommit } from '../storage/group-commit.ts';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../storage/private-files.ts';
import { isNoSpace, SpaceReserve } from '../storage/space-reserve.ts';
import { DirtyBitmap, type Region } from './dirty-bitmap.ts';
import { readSegment, SEGMENT_NAME, type SegmentPosition, segmentName } from './journal-reader.ts';
import {
  type ChecksumMode,
  encodeRecord,
  type JournalRecord,
  type Marker,
  type RecordKind,
} from './journal-record.ts';
import {
  type JournalState,
  type OverflowReason,
  readJournalState,
  writeJournalState,
} from './journal-state.ts';
import { scanSegment } from './segment-scan.ts';

const MAX_IOV = 1024;
/** Room kept free on the journal's file system to record a switch to bitmap mode once it is full. */
const RESERVE_BYTES = 256 * 1024;

export interface WriteJournalOptions {
  /** Size of the disk whose writes are journaled (bounds offsets, sizes the dirty bitmap). */
  diskSize: number;
  /** Bytes the journal's segments may hold before it falls back to the dirty bitmap. */
  capacityBytes: number;
  /** Size at which a new segment file is started; whole segments are freed by `trimThrough`. */
  segmentBytes?: number;
  /** Granularity of the dirty bitmap (default 64 KiB). */
  regionSize?: number;
  fileSync?: FileSync;
  now?: () => number;
  /**
   * Decides when appends run synchronously. Default: never. Appends grow the
   * file, so they stall now and then on block allocation and writeback
   * throttling; one writer on the threadpool takes those stalls off the event
   * loop, and batching (one writev per burst of requests) pays for the hand-off.
   */
  budget?: SyncBudget;
  /** Where the journal reports switching to bitmap mode and failures (default: stderr). */
  log?: (line: string) => void;
}

/**
 * The change to the disk image that a record describes, run once the record
 * is written. Readers see the record only once this has settled, so a change
 * the image did not take is never shipped.
 */
export interface ImageChange {
  apply(): Promise<void>;
  /** After `apply` failed: the bytes the image holds in the range now (a write's record is rewritten to say them). */
  readBack(): Promise<Buffer>;
}

export interface JournalStatus {
  mode: 'journal' | 'bitmap';
  /** Sequence the next record will get. */
  nextSeq: number;
  /**
   * Every record up to here is written to the segment files (survives a
   * process crash) and its image change has settled: readers see records
   * through here.
   */
  writtenSeq: number;
  /** Every record up to here is synced (survives a power loss). */
  durableSeq: number;
  consumedSeq: number;
  /** Oldest sequence still readable. */
  firstSeq: number;
  usedBytes: number;
  capacityBytes: number;
  resyncRequired: boolean;
  overflowSeq: number | null;
  /** Why the journal last switched to bitmap mode: its capacity, or its file system being full. */
  overflowReason: OverflowReason | null;
}

/** Handed out by `beginResync`: copy these regions from the disk, then `completeResync(plan)`. */
export interface ResyncPlan {
  id: number;
  regions: Region[];
  /** Sequence of the resync marker; records from here on are journaled again. */
  resumeSeq: number;
}

class Segment {
  readonly firstSeq: number;
  readonly path: string;
  /** Bytes assigned to records (written or queued). */
  size: number;
  lastSeq: number;
  fh: FileHandle | null = null;
  io: FileIo | null = null;
  unsynced = false;
  pendingWrites = 0;
  retired = false;
  deleted = false;
  #opening: Promise<FileHandle> | null = null;
  readonly #isNew: boolean;

  constructor(dir: string, firstSeq: number, size: number, lastSeq: number, isNew: boolean) {
    this.firstSeq = firstSeq;
    this.path = join(dir, segmentName(firstSeq));
    this.size = size;
    this.lastSeq = lastSeq;
    this.#isNew = isNew;
  }

  handle(budget: SyncBudget, onOpen: (s: Segment) => void): Promise<FileIo> {
    this.#opening ??= open(this.path, this.#isNew ? 'w+' : 'r+', PRIVATE_FILE_MODE).then((fh) => {
      this.fh = fh;
      this.io = new FileIo(fh.fd, budget);
      onOpen(this);
      return fh;
    });
    return this.#opening.then(() => this.io as FileIo);
  }
}

/** A segment open for reading, shared by the readers in it. */
interface SegmentReader {
  segment: Segment;
  path: string;
  fh: FileHandle;
  /** Bytes assigned to the segment's records so far: a read need not ask for more. */
  size: () => number;
  users: number;
}

interface Appended {
  seq: number;
  timeMs: number;
  segment: Segment;
  position: number;
  /**
   * Resolves once the record is in the segment file (true), or false when the
   * file system was full and the journal switched to bitmap mode instead.
   */
  written: Promise<boolean>;
}

interface WriteItem {
  segment: Segment;
  buffers: Buffer[];
  position: number;
  bytes: number;
  seq: number;
  resolve: (journaled: boolean) => void;
  reject: (e: unknown) => void;
}

/** A record written whose image change has not settled yet: hidden from readers. */
interface Unsettled {
  segment: Segment;
  position: number;
  timeMs: number;
}

function checkedInt(name: string, value: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new HavenError('bad_request', `${name} ${value} is not an integer between 0 and ${max}`, {
      field: name,
      value,
    });
  }
}

/**
 * The disk service's write journal: an append-only log, in segment files, of
 * every write, trim, write-zeroes, flush (crash-consistent boundary) and marker
 * (app-consistent or group point), each with a sequence number, time and
 * checksum. Appends are written in sequence order; `flush` makes them durable
 * with one shared fdatasync for concurrent callers. Bounded: past
 * `capacityBytes` it records writes only as dirty regions in a persisted
 * bitmap and reports that a resync is required.
 *
 * Sequence numbers are assigned synchronously when a record* method is called,
 * so callers that must order operations can rely on call order.
 */
export class WriteJournal {
  readonly dir: string;
  readonly diskSize: number;
  readonly capacityBytes: number;
  readonly segmentBytes: number;
  readonly regionSize: number;

  #segments: Segment[];
  #active: Segment | null;
  readonly #open = new Set<Segment>();
  #nextSeq: number;
  #writtenSeq: number;
  #durableSeq: number;
  #usedBytes: number;
  readonly #state: JournalState;
  readonly #statePath: string;
  #stateChain: Promise<void> = Promise.resolve();
  readonly #bitmap: DirtyBitmap;
  readonly #fileSync: FileSync;
  readonly #now: () => number;
  readonly #queue: WriteItem[] = [];
  #draining = false;
  #lastWrite: Promise<void> = Promise.resolve();
  #dirDirty = false;
  #failed: unknown = null;
  #closed = false;
  readonly #commit: GroupCommit;
  /** Saving the switch to bitmap mode: bitmap-mode writes are acknowledged only once it is durable. */
  #overflowSaved: Promise<void> = Promise.resolve();
  readonly #budget: SyncBudget;
  readonly #unsettled = new Map<number, Unsettled>();
  readonly #reserve: SpaceReserve;
  readonly #log: (line: string) => void;
  /** Where the last `records` read stopped (the sender's next read starts there). */
  #readEnd: ({ segment: Segment } & SegmentPosition) | null = null;
  /** A read handle kept open on the segment readers are in, so a reader coming back does not reopen it. */
  #reader: SegmentReader | null = null;
  readonly #listeners = new Set<() => void>();

  private constructor(
    dir: string,
    options: Required<Omit<WriteJournalOptions, 'now' | 'fileSync' | 'budget' | 'log'>>,
    fileSync: FileSync,
    budget: SyncBudget,
    now: () => number,
    segments: Segment[],
    nextSeq: number,
    state: JournalState,
    bitmap: DirtyBitmap,
    reserve: SpaceReserve,
    log: (line: string) => void,
  ) {
    this.#reserve = reserve;
    this.#log = log;
    this.dir = dir;
    this.diskSize = options.diskSize;
    this.capacityBytes = options.capacityBytes;
    this.segmentBytes = options.segmentBytes;
    this.regionSize = options.regionSize;
    this.#fileSync = fileSync;
    this.#budget = budget;
    this.#now = now;
    this.#segments = segments;
    const last = segments.at(-1);
    this.#active = last !== undefined && last.size < this.segmentBytes ? last : null;
    this.#nextSeq = nextSeq;
    this.#writtenSeq = nextSeq - 1;
    this.#durableSeq = nextSeq - 1;
    this.#usedBytes = segments.reduce((n, s) => n + s.size, 0);
    this.#state = state;
    this.#statePath = join(dir, 'state.json');
    this.#bitmap = bitmap;
    this.#commit = new GroupCommit(() => this.#doSync());
  }

  /** Opens (or creates) the journal in `dir`, recovering from a crash: a torn tail is cut off, corruption elsewhere is an error. */
  static async open(dir: string, options: WriteJournalOptions): Promise<WriteJournal> {
    checkedInt('diskSize', options.diskSize, Number.MAX_SAFE_INTEGER);
    checkedInt('capacityBytes', options.capacityBytes, Number.MAX_SAFE_INTEGER);
    const regionSize = options.regionSize ?? 65536;
    const segmentBytes =
      options.segmentBytes ?? Math.min(64 << 20, Math.max(1 << 20, Math.floor(options.capacityBytes / 8)));
    const fileSync = options.fileSync ?? realFileSync;
    await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    const state = await readJournalState(join(dir, 'state.json'));

    let found = (await readdir(dir))
      .map((name) => ({ name, match: SEGMENT_NAME.exec(name) }))
      .filter((f) => f.match !== null)
      .map((f) => ({ name: f.name, firstSeq: Number(f.match?.[1]) }))
      .sort((a, b) => a.firstSeq - b.firstSeq);
    // Segments the consumer already stored may survive a crash during trimming.
    while (found.length >= 2 && (found[1]?.firstSeq ?? 0) - 1 <= state.consumedSeq) {
      await unlink(join(dir, found[0]?.name ?? ''));
      found = found.slice(1);
    }

    const segments: Segment[] = [];
    let expected = found[0]?.firstSeq ?? state.consumedSeq + 1;
    if (expected > state.consumedSeq + 1) {
      throw new HavenError(
        'internal',
        `write journal '${dir}' is missing records ${state.consumedSeq + 1} to ${expected - 1}: ` +
          'they were neither consumed nor found in a segment',
        { kind: 'journal_corrupt', dir, consumedSeq: state.consumedSeq, firstSeq: expected },
      );
    }
    for (const [i, f] of found.entries()) {
      const path = join(dir, f.name);
      if (f.firstSeq !== expected) {
        throw new HavenError(
          'internal',
          `write journal segment '${path}' starts at sequence ${f.firstSeq} but ${expected} was expected: a segment is missing`,
          { kind: 'journal_corrupt', segment: path, expected },
        );
      }
      const isLast = i === found.length - 1;
      const scan = scanSegment(path, await readFile(path), f.firstSeq, isLast);
      if (scan.torn) {
        await truncate(path, scan.validBytes);
      }
      expected = scan.lastSeq + 1;
      if (scan.records === 0) {
        await unlink(path);
        continue;
      }
      segments.push(new Segment(dir, f.firstSeq, scan.validBytes, scan.lastSeq, false));
    }
    // Recovered bytes may still be only in the page cache of a process that died.
    const last = segments.at(-1);
    if (last !== undefined) {
      const fh = await open(last.path, 'r+');
      try {
        await fileSync.datasync(fh);
      } finally {
        await fh.close();
      }
    }
    const bitmap = await DirtyBitmap.open(join(dir, 'dirty.bitmap'), options.diskSize, regionSize, fileSync);
    const log = options.log ?? ((line: string) => console.error(line));
    const reserve = new SpaceReserve(join(dir, 'space.reserve'), RESERVE_BYTES, fileSync);
    if (!(await reserve.ensure())) {
      log(
        `write journal '${dir}': its file system has no room for the ${RESERVE_BYTES}-byte reserve; ` +
          'if it fills up, the switch to the dirty bitmap may not be recordable',
      );
    }
    return new WriteJournal(
      dir,
      { diskSize: options.diskSize, capacityBytes: options.capacityBytes, segmentBytes, regionSize },
      fileSync,
      options.budget ?? new SyncBudget({ mode: 'async' }),
      options.now ?? Date.now,
      segments,
      Math.max(expected, state.consumedSeq + 1),
      state,
      bitmap,
      reserve,
      log,
    );
  }

  get status(): JournalStatus {
    return {
      mode: this.#state.mode,
      nextSeq: this.#nextSeq,
      writtenSeq: this.#readableSeq,
      durableSeq: this.#durableSeq,
      consumedSeq: this.#state.consumedSeq,
      firstSeq: this.#segments[0]?.firstSeq ?? this.#nextSeq,
      usedBytes: this.#usedBytes,
      capacityBytes: this.capacityBytes,
      resyncRequired: this.resyncRequired,
      overflowSeq: this.#state.overflowSeq,
      overflowReason: this.#state.overflowReason,
    };
  }

  /** Records through here are written and settled (see ImageChange). */
  get #readableSeq(): number {
    let seq = this.#writtenSeq;
    for (const pending of this.#unsettled.keys()) seq = Math.min(seq, pending - 1);
    return seq;
  }

  get mode(): 'journal' | 'bitmap' {
    return this.#state.mode;
  }

  /** Why the journal accepts no more writes (a write to it failed), or null while it does. */
  get failure(): string | null {
    if (this.#failed === null) return null;
    return this.#failed instanceof Error ? this.#failed.message : String(this.#failed);
  }

  /** True once the journal overflowed, until every dirty region has been resynced. */
  get resyncRequired(): boolean {
    return this.#state.mode === 'bitmap' || this.#bitmap.anyDirty;
  }

  /** Regions written while the journal was full (merged, region-aligned byte ranges). */
  dirtyRegions(): Region[] {
    return this.#bitmap.regions();
  }

  /**
   * Records a write. Resolves with its sequence once the record is written to
   * the journal file, or with null in bitmap mode once its region is durably
   * marked dirty. `data` must not change until then.
   *
   * With `image`, its change is applied after that and the call resolves once
   * it is; readers see the record only then. When it fails, the record is
   * rewritten with what the image holds in the range (so it never ships data
   * the image did not store) and the call rejects with the image's error.
   */
  recordWrite(offset: number, data: Buffer, image?: ImageChange): Promise<number | null> {
    return this.#record('write', offset, data.length, data, image);
  }

  /** Like recordWrite; when `image` fails, the range is marked dirty for a resync (the record cannot say what the image holds). */
  recordTrim(offset: number, length: number, image?: ImageChange): Promise<number | null> {
    return this.#record('trim', offset, length, undefined, image);
  }

  recordZero(offset: number, length: number, image?: ImageChange): Promise<number | null> {
    return this.#record('zero', offset, length, undefined, image);
  }

  /**
   * Appends a flush record (a crash-consistent boundary) and resolves, with its
   * sequence, once every record so far is durable. Concurrent flushes share one
   * fdatasync. In bitmap mode no record is added and it resolves with null.
   */
  async flush(): Promise<number | null> {
    const appended = this.#append('flush', 0, 0);
    const journaled = appended !== null && (await appended.written);
    await this.#commit.sync();
    return journaled ? appended.seq : null;
  }

  /** Makes every record written so far durable, without adding a record (for FUA writes). */
  sync(): Promise<void> {
    this.#checkUsable();
    return this.#commit.sync();
  }

  /** Inserts a marker and resolves with its record once it is durable. */
  async addMarker(marker: Marker): Promise<JournalRecord> {
    const types: readonly string[] = ['app-consistent', 'group', 'resync'];
    if (!types.includes(marker.type) || typeof marker.id !== 'string' || marker.id.length === 0) {
      throw new HavenError(
        'validation_failed',
        `marker needs a type (${types.join(', ')}) and a non-empty id`,
        {
          field: 'marker',
        },
      );
    }
    if (
      marker.id.length > 256 ||
      (marker.groupPointId?.length ?? 0) > 256 ||
      (marker.label?.length ?? 0) > 4096
    ) {
      throw new HavenError(
        'validation_failed',
        'marker id and group point id are limited to 256 and label to 4096 characters',
        { field: 'marker' },
      );
    }
    const clean: Marker = {
      type: marker.type,
      id: marker.id,
      ...(marker.label === undefined ? {} : { label: marker.label }),
      ...(marker.groupPointId === undefined ? {} : { groupPointId: marker.groupPointId }),
    };
    const appended = this.#append('marker', 0, 0, undefined, clean);
    if (appended === null || !(await appended.written)) {
      throw new HavenError(
        'operation_not_allowed',
        `write journal '${this.dir}' is full and recording dirty regions only; a marker can be added again after a resync`,
        { mode: 'bitmap', allowed: ['beginResync'] },
      );
    }
    await this.#commit.sync();
    return {
      seq: appended.seq,
      timeMs: appended.timeMs,
      kind: 'marker',
      offset: 0,
      length: 0,
      marker: clean,
    };
  }

  /**
   * Records from `fromSeq` (default: the first not consumed) up to those
   * written when called; `checksums: 'carry'` as in `readSegment`.
   */
  async *records(
    fromSeq = this.#state.consumedSeq + 1,
    options: { checksums?: ChecksumMode } = {},
  ): AsyncGenerator<JournalRecord> {
    const until = this.#readableSeq;
    const oldest = this.#segments[0]?.firstSeq ?? this.#nextSeq;
    if (fromSeq < oldest && fromSeq <= until) {
      throw new HavenError(
        'conflict',
        `write journal '${this.dir}' no longer holds record ${fromSeq}: records before ${oldest} were trimmed`,
        { fromSeq, firstSeq: oldest },
      );
    }
    const segments = this.#segments.filter((s) => s.lastSeq >= fromSeq && s.firstSeq <= until);
    for (const segment of segments) {
      // A reader continuing where the last one stopped resumes at its file position.
      const hint = this.#readEnd;
      const start = hint?.segment === segment && hint.seq === fromSeq ? hint : undefined;
      const onEnd = (end: SegmentPosition) => {
        this.#readEnd = { segment, ...end };
      };
      const reader = await this.#openReader(segment);
      try {
        const records = readSegment(reader, segment.firstSeq, until, false, start, onEnd, options.checksums);
        for await (const record of records) {
          if (record.seq >= fromSeq) yield record;
        }
      } finally {
        await this.#releaseReader(reader);
      }
    }
  }

  /** The kept read handle if it is on `segment`, else a new one (kept unless another reader uses the kept one). */
  async #openReader(segment: Segment): Promise<SegmentReader> {
    const kept = this.#reader;
    if (kept?.segment === segment) {
      kept.users++;
      return kept;
    }
    const reader: SegmentReader = {
      segment,
      path: segment.path,
      fh: await open(segment.path, 'r'),
      size: () => segment.size,
      users: 1,
    };
    if (this.#reader === kept && (kept === null || kept.users === 0)) {
      this.#reader = reader;
      await kept?.fh.close();
    }
    return reader;
  }

  async #releaseReader(reader: SegmentReader): Promise<void> {
    reader.users--;
    if (reader.users > 0) return;
    if (reader !== this.#reader || reader.segment.deleted || this.#closed) {
      if (this.#reader === reader) this.#reader = null;
      await reader.fh.close();
    }
  }

  /** Calls `listener` whenever records become readable or a resync becomes due; returns its removal. */
  onRecords(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }

  /**
   * The consumer has durably stored every record through `seq`: remember that,
   * and delete the segments holding only such records.
   */
  async trimThrough(seq: number): Promise<void> {
    this.#checkUsable();
    checkedInt('seq', seq, this.#readableSeq);
    if (seq <= this.#state.consumedSeq) return;
    this.#state.consumedSeq = seq;
    await this.#saveState();
    const active = this.#active;
    if (active !== null && active.size > 0 && active.lastSeq <= seq) {
      active.retired = true;
      this.#active = null;
    }
    const keep: Segment[] = [];
    let deleted = false;
    for (const segment of this.#segments) {
      if (segment === this.#active || segment.lastSeq > seq) {
        keep.push(segment);
        continue;
      }
      segment.deleted = true;
      segment.retired = true;
      deleted = true;
      this.#usedBytes -= segment.size;
      await unlink(segment.path).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
    }
    this.#segments = keep;
    const reader = this.#reader;
    if (reader?.segment.deleted && reader.users === 0) {
      this.#reader = null;
      await reader.fh.close();
    }
    // The sync pass closes handles of deleted segments once their writes are done.
    if (deleted) await this.#commit.sync();
  }

  /**
   * Starts a resync after an overflow: journaling resumes (there must be room
   * again, so trim first) and the regions dirty so far are returned. Copy their
   * current contents from the disk, then call `completeResync(plan)`. Records
   * from `plan.resumeSeq` on must be applied after the copied regions; replaying
   * them over data that already holds them is harmless.
   */
  async beginResync(): Promise<ResyncPlan> {
    this.#checkUsable();
    if (!this.resyncRequired) {
      throw new HavenError('conflict', `write journal '${this.dir}' needs no resync`, {
        mode: this.#state.mode,
      });
    }
    const headroom = Math.min(this.segmentBytes, Math.floor(this.capacityBytes / 4));
    if (this.#usedBytes + headroom > this.capacityBytes) {
      throw new HavenError(
        'conflict',
        `write journal '${this.dir}' is still full (${this.#usedBytes} of ${this.capacityBytes} bytes): ` +
          'trim consumed records before resuming',
        { usedBytes: this.#usedBytes, capacityBytes: this.capacityBytes },
      );
    }
    if (this.#state.mode === 'bitmap' && !(await this.#reserve.ensure())) {
      throw new HavenError(
        'conflict',
        `the file system of write journal '${this.dir}' is still full: free space there before resuming`,
        { dir: this.dir, overflowReason: this.#state.overflowReason },
      );
    }
    const regions = this.#bitmap.regions();
    this.#state.mode = 'journal';
    const id = this.#state.overflowCount;
    const saved = this.#saveState();
    const marker = await this.addMarker({ type: 'resync', id: `resync-${id}` });
    await saved;
    return { id, regions, resumeSeq: marker.seq };
  }

  /** Marks regions dirty (durable on return): used by recovery for writes it cannot replay. */
  async markDirty(regions: readonly Region[]): Promise<void> {
    this.#checkUsable();
    for (const r of regions) await this.#bitmap.markDirty(r.offset, r.length);
  }

  /** The given regions of a resync plan have been copied: forget them (durably). */
  async clearResync(id: number, regions: readonly Region[]): Promise<void> {
    this.#checkUsable();
    if (this.#state.mode === 'bitmap' || this.#state.overflowCount !== id) {
      throw new HavenError(
        'conflict',
        `resync ${id} of write journal '${this.dir}' is stale: the journal overflowed again; begin a new resync`,
        { id, overflowCount: this.#state.overflowCount, mode: this.#state.mode },
      );
    }
    await this.#bitmap.clear(regions);
  }

  completeResync(plan: ResyncPlan): Promise<void> {
    return this.clearResync(plan.id, plan.regions);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#lastWrite;
    if (this.#failed === null) await this.#commit.sync();
    await this.#commit.idle();
    for (const segment of this.#open) await segment.fh?.close();
    this.#open.clear();
    if (this.#reader?.users === 0) await this.#reader.fh.close();
    this.#reader = null;
    await this.#stateChain;
    await this.#bitmap.close();
  }

  #checkUsable(): void {
    if (this.#closed) {
      throw new HavenError('operation_not_allowed', `write journal '${this.dir}' is closed`, {
        dir: this.dir,
      });
    }
    if (this.#failed !== null) {
      throw new HavenError(
        'internal',
        `write journal '${this.dir}' failed to write (${String(this.#failed)}); reopen it to recover`,
        { dir: this.dir },
      );
    }
  }

  #record(
    kind: RecordKind,
    offset: number,
    length: number,
    data?: Buffer,
    image?: ImageChange,
  ): Promise<number | null> {
    let appended: Appended | null;
    try {
      checkedInt('offset', offset, this.diskSize);
      checkedInt('length', length, this.diskSize - offset);
      appended = this.#append(kind, offset, length, data);
    } catch (e) {
      return Promise.reject(e);
    }
    const inBitmap = async (): Promise<null> => {
      // Recovery replays the journal tail unless the mode says bitmap: that would undo this write.
      await Promise.all([this.#bitmap.markDirty(offset, length), this.#overflowSaved]);
      await image?.apply();
      return null;
    };
    if (appended === null) return inBitmap();
    const { seq, timeMs, segment, position } = appended;
    if (image !== undefined) {
      this.#unsettled.set(seq, { segment, position, timeMs });
      segment.pendingWrites++;
    }
    return appended.written.then(async (journaled) => {
      // Not journaled: the file system was full and the switch to bitmap mode rolled the record back.
      if (!journaled) return inBitmap();
      if (image === undefined) return seq;
      try {
        await image.apply();
      } catch (e) {
        await this.#correct(kind, seq, offset, length, image, e);
        throw e;
      } finally {
        this.#settle(seq);
      }
      return seq;
    });
  }

  #settle(seq: number): void {
    const pending = this.#unsettled.get(seq);
    if (pending === undefined) return;
    this.#unsettled.delete(seq);
    pending.segment.pendingWrites--;
    this.#notify();
  }

  /**
   * The image did not take a journaled change: make the journal say what the
   * image holds before any reader sees the record. A write's record is
   * rewritten in place with the image's bytes (same length, new checksum);
   * a trim or write-zeroes covers no data to rewrite, so its range is marked
   * dirty and the next resync copies it from the image.
   */
  async #correct(
    kind: RecordKind,
    seq: number,
    offset: number,
    length: number,
    image: ImageChange,
    cause: unknown,
  ): Promise<void> {
    const pending = this.#unsettled.get(seq);
    if (pending === undefined) return;
    try {
      if (kind === 'write') {
        const actual = await image.readBack();
        const buffers = encodeRecord({ seq, timeMs: pending.timeMs, kind, offset, length, data: actual });
        const io =
          pending.segment.io ?? (await pending.segment.handle(this.#budget, (s) => this.#open.add(s)));
        await io.writevFully(buffers, pending.position);
        pending.segment.unsynced = true;
      } else {
        await this.#bitmap.markDirty(offset, length);
      }
      this.#log(
        `write journal '${this.dir}': the image did not take ${kind} ${seq} (${length} bytes at ${offset}): ` +
          `${String(cause)}; ${kind === 'write' ? 'its record now holds what the image holds' : 'its range is marked for resync'}`,
      );
    } catch (e) {
      // The record would ship a change the image does not have: stop rather than replicate it.
      this.#failed ??= e;
      this.#log(`write journal '${this.dir}' failed: could not correct record ${seq}: ${String(e)}`);
    }
  }

  /** Assigns the next sequence and queues the record; null when in (or entering) bitmap mode. */
  #append(kind: RecordKind, offset: number, length: number, data?: Buffer, marker?: Marker): Appended | null {
    this.#checkUsable();
    if (this.#state.mode === 'bitmap') return null;
    const timeMs = this.#now();
    const seq = this.#nextSeq;
    const buffers = encodeRecord({ seq, timeMs, kind, offset, length, data, marker });
    const bytes = buffers.reduce((n, b) => n + b.length, 0);
    if (this.#usedBytes + bytes > this.capacityBytes) {
      this.#enterBitmapMode(seq - 1, 'capacity', async () => {});
      return null;
    }
    this.#nextSeq++;
    let segment = this.#active;
    if (segment === null || (segment.size > 0 && segment.size + bytes > this.segmentBytes)) {
      if (segment !== null) segment.retired = true;
      segment = new Segment(this.dir, seq, 0, seq - 1, true);
      this.#segments.push(segment);
      this.#active = segment;
      this.#dirDirty = true;
    }
    const position = segment.size;
    segment.size += bytes;
    segment.lastSeq = seq;
    segment.pendingWrites++;
    this.#usedBytes += bytes;
    const written = new Promise<boolean>((resolve, reject) => {
      this.#queue.push({ segment, buffers, position, bytes, seq, resolve, reject });
    });
    this.#lastWrite = written.then(
      () => {},
      () => {},
    );
    if (!this.#draining) {
      // Start writing after the current burst of requests (one socket read's
      // worth) has been appended, so they go out in one writev.
      this.#draining = true;
      queueMicrotask(() => void this.#drain());
    }
    return { seq, timeMs, segment, position, written };
  }

  /**
   * Switches to bitmap mode (synchronously: later appends see it) and saves
   * that durably; writes acknowledged in bitmap mode wait for the save.
   * `prepare` runs before the save (undoing what a full file system left).
   */
  #enterBitmapMode(overflowSeq: number, reason: OverflowReason, prepare: () => Promise<void>): void {
    this.#state.mode = 'bitmap';
    this.#state.overflowSeq = overflowSeq;
    queueMicrotask(() => this.#notify());
    this.#state.overflowCount++;
    this.#state.overflowReason = reason;
    const what =
      reason === 'capacity'
        ? `is full (${this.#usedBytes} of ${this.capacityBytes} bytes)`
        : 'cannot grow: its file system is full';
    this.#log(
      `write journal '${this.dir}' ${what} after record ${overflowSeq}: ` +
        'recording dirty regions in the bitmap until a resync',
    );
    this.#overflowSaved = prepare().then(() => this.#saveState());
    this.#overflowSaved.catch((e: unknown) => {
      this.#log(`write journal '${this.dir}' could not record the switch to bitmap mode: ${String(e)}`);
    });
  }

  /**
   * The journal's file system is full: the records of `failed` (the batch that
   * did not fit) and every record queued after it are taken back, as if the
   * journal had reached its capacity before them, and their writes go to the
   * dirty bitmap. Nobody has seen them: readers and callers see a record only
   * once it is written.
   */
  #fileSystemFull(failed: WriteItem[], cause: unknown): void {
    const items = [...failed, ...this.#queue.splice(0)];
    const first = items[0] as WriteItem;
    const firstSeq = first.seq;
    this.#nextSeq = firstSeq;
    for (const item of items) {
      item.segment.pendingWrites--;
      this.#usedBytes -= item.bytes;
      const pending = this.#unsettled.get(item.seq);
      if (pending !== undefined) {
        this.#unsettled.delete(item.seq);
        pending.segment.pendingWrites--;
      }
    }
    const cut = first.segment;
    const dropped = this.#segments.filter((s) => s.firstSeq >= firstSeq);
    this.#segments = this.#segments.filter((s) => s.firstSeq < firstSeq);
    for (const segment of dropped) {
      segment.deleted = true;
      segment.retired = true;
      segment.unsynced = false;
    }
    if (!cut.deleted) {
      cut.size = first.position;
      cut.lastSeq = firstSeq - 1;
      cut.retired = true;
    }
    this.#active = null;
    this.#enterBitmapMode(firstSeq - 1, 'filesystem-full', async () => {
      this.#log(`write journal '${this.dir}': ${String(cause)}`);
      if (!cut.deleted) await truncate(cut.path, cut.size);
      for (const segment of dropped) {
        await unlink(segment.path).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'ENOENT') throw e;
        });
      }
      // Room for the state file's atomic replace.
      await this.#reserve.release();
    });
    for (const item of items) item.resolve(false);
  }

  /** Writes queued records in order, coalescing neighbours into one writev. */
  async #drain(): Promise<void> {
    this.#draining = true;
    while (this.#queue.length > 0) {
      const first = this.#queue[0] as WriteItem;
      const batch: WriteItem[] = [];
      const buffers: Buffer[] = [];
      let end = first.position;
      for (let next = this.#queue[0]; next !== undefined; next = this.#queue[0]) {
        if (next.segment !== first.segment || next.position !== end) break;
        if (buffers.length + next.buffers.length > MAX_IOV) break;
        this.#queue.shift();
        batch.push(next);
        buffers.push(...next.buffers);
        end += next.bytes;
      }
      try {
        if (this.#failed !== null) throw this.#failed;
        const io = first.segment.io ?? (await first.segment.handle(this.#budget, (s) => this.#open.add(s)));
        await io.writevFully(buffers, first.position);
        first.segment.unsynced = true;
        this.#writtenSeq = (batch.at(-1) as WriteItem).seq;
        for (const item of batch) {
          item.segment.pendingWrites--;
          item.resolve(true);
        }
        this.#notify();
      } catch (e) {
        if (this.#failed === null && !this.#closed && isNoSpace(e)) {
          this.#fileSystemFull(batch, e);
          continue;
        }
        if (this.#failed === null) this.#log(`write journal '${this.dir}' failed to write: ${String(e)}`);
        this.#failed ??= e;
        for (const item of batch) {
          item.segment.pendingWrites--;
          item.reject(e);
        }
      }
    }
    this.#draining = false;
  }

  async #doSync(): Promise<void> {
    await this.#lastWrite;
    if (this.#failed !== null) throw this.#failed;
    const target = this.#writtenSeq;
    if (this.#dirDirty) {
      this.#dirDirty = false;
      await syncDirectory(this.dir);
    }
    for (const segment of [...this.#open]) {
      if (segment.unsynced && !segment.deleted && segment.fh !== null) {
        segment.unsynced = false;
        await this.#fileSync.datasync(segment.fh);
      }
      if (segment.retired && segment.pendingWrites === 0 && !segment.unsynced) {
        this.#open.delete(segment);
        segment.io = null;
        await segment.fh?.close();
      }
    }
    this.#durableSeq = Math.max(this.#durableSeq, target);
  }

  #saveState(): Promise<void> {
    const snapshot = { ...this.#state };
    const next = this.#stateChain.then(() => writeJournalState(this.#statePath, snapshot));
    this.#stateChain = next.catch(() => {});
    return next;
  }
}
