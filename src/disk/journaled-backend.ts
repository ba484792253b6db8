import { type FileHandle, open } from 'node:fs/promises';
import { HavenError } from '../errors/index.ts';
import type { BlockBackend, BlockExtent, WriteOptions } from '../nbd/block-backend.ts';
import { AllocationMap } from '../storage/allocation-map.ts';
import { FileIo, type FileIoPolicy, SyncBudget } from '../storage/file-io.ts';
import { type FileSync, realFileSync } from '../storage/file-sync.ts';
import { GroupCommit } from '../storage/group-commit.ts';
import { checkRange } from './check-range.ts';
import type { Region } from './dirty-bitmap.ts';
import { type ResyncPlan, WriteJournal } from './write-journal.ts';

const ZERO_BLOCK = 1 << 20;

export interface JournaledBackendOptions {
  imagePath: string;
  journalDir: string;
  journalCapacityBytes: number;
  journalSegmentBytes?: number;
  /** Granularity of the allocation map (default 64 KiB). */
  chunkSize?: number;
  /** Granularity of the journal's dirty bitmap (default 64 KiB). */
  regionSize?: number;
  fileSync?: FileSync;
  now?: () => number;
  /** How image I/O is run (default: synchronously while the page cache answers fast). */
  io?: FileIoPolicy;
  /** Where the journal reports switching to bitmap mode and failures (default: stderr). */
  log?: (line: string) => void;
}

/** An operation on a byte range; later overlapping operations wait for it so the image matches journal order. */
interface InFlight {
  start: number;
  end: number;
  done: Promise<void>;
}

/**
 * A raw image served with every change journaled (the disk service's backend).
 * Each write is appended to the journal first and then written to the image,
 * and acknowledged when both are done; overlapping requests reach the image in
 * journal order, so replaying the journal reproduces the image. FLUSH and FUA
 * are acknowledged only when the image and the journal are durable. After an
 * unclean shutdown, records since the flush before the last are replayed onto the image
 * (in bitmap mode their regions are marked dirty instead).
 *
 * Ordering, and why it is not relaxed for speed: one request's image write
 * starts only once its journal record is written (to the page cache, which
 * survives kill -9). Replay repairs an image that is behind the journal but
 * cannot undo one that is ahead: a write in the image and not in the journal
 * would never be shipped. The record is hidden from the journal's readers
 * until the image write has settled; when the image's file system refuses it
 * (ENOSPC), the record is rewritten with what the image holds in the range,
 * so the replica never receives a change the disk did not store. Different requests do overlap (their records leave
 * in one writev), and both writes are usually synchronous page-cache copies
 * (see FileIo). FLUSH syncs the image before
 * appending and syncing the flush record, which claims the image holds
 * everything before it; FUA syncs both files concurrently.
 */
export class JournaledBackend implements BlockBackend {
  readonly size: number;
  readonly readOnly = false;
  readonly canTrim = true;
  readonly canWriteZeroes = true;
  readonly journal: WriteJournal;
  /** Whether opening found an unclean shutdown and recovered from it. */
  readonly recovered: boolean;

  readonly #fh: FileHandle;
  readonly #io: FileIo;
  readonly #alloc: AllocationMap;
  readonly #inFlight = new Set<InFlight>();
  readonly #imageCommit: GroupCommit;
  readonly #imagePath: string;
  #closed = false;

  private constructor(
    imagePath: string,
    fh: FileHandle,
    size: number,
    journal: WriteJournal,
    alloc: AllocationMap,
    recovered: boolean,
    fileSync: FileSync,
    budget: SyncBudget,
  ) {
    this.#imagePath = imagePath;
    this.#fh = fh;
    this.#io = new FileIo(fh.fd, budget);
    this.size = size;
    this.journal = journal;
    this.#alloc = alloc;
    this.recovered = recovered;
    this.#imageCommit = new GroupCommit(() => fileSync.datasync(fh));
  }

  static async open(options: JournaledBackendOptions): Promise<JournaledBackend> {
    const fileSync = options.fileSync ?? realFileSync;
    let fh: FileHandle;
    try {
      fh = await open(options.imagePath, 'r+');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new HavenError('not_found', `disk image '${options.imagePath}' does not exist`, {
          kind: 'image',
          id: options.imagePath,
        });
      }
      throw e;
    }
    try {
      const size = (await fh.stat()).size;
      const budget = new SyncBudget(options.io);
      const journal = await WriteJournal.open(options.journalDir, {
        diskSize: size,
        capacityBytes: options.journalCapacityBytes,
        fileSync,
        // Appends run on the event loop while the disk answers fast, like the image's writes: the
        // threadpool hand-off before every image write left the loop idle (64 KiB writes: +10%, -15% CPU).
        budget,
        ...(options.journalSegmentBytes === undefined ? {} : { segmentBytes: options.journalSegmentBytes }),
        ...(options.regionSize === undefined ? {} : { regionSize: options.regionSize }),
        ...(options.now === undefined ? {} : { now: options.now }),
        ...(options.log === undefined ? {} : { log: options.log }),
      });
      const { map, unclean } = await AllocationMap.open(
        options.imagePath,
        fh,
        size,
        options.chunkSize ?? 65536,
      );
      const backend = new JournaledBackend(
        options.imagePath,
        fh,
        size,
        journal,
        map,
        unclean,
        fileSync,
        budget,
      );
      if (unclean) await backend.#recover();
      return backend;
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** Brings the image up to the journal after a crash: the journal is written first, so it may be ahead. */
  async #recover(): Promise<void> {
    // The last flush waited only for the writes in flight when it began: a
    // write that began while it synced the image has an earlier sequence than
    // its record, and a crash may have cut that write's image write short.
    // Every write before the flush ahead of it had reached the image by then,
    // so replay starts after that one; never before a resync marker, though:
    // writes known only to the bitmap came before it.
    const { firstSeq } = this.journal.status;
    let lastFlush = firstSeq - 1;
    let previousFlush = firstSeq - 1;
    let resumed = firstSeq - 1;
    for await (const record of this.journal.records(firstSeq)) {
      if (record.kind === 'flush') {
        previousFlush = lastFlush;
        lastFlush = record.seq;
      } else if (record.kind === 'marker' && record.marker?.type === 'resync') {
        resumed = record.seq;
      }
    }
    const boundary = Math.max(previousFlush, resumed);
    const bitmapMode = this.journal.mode === 'bitmap';
    const dirty: Region[] = [];
    for await (const record of this.journal.records(boundary + 1)) {
      if (record.kind === 'flush' || record.kind === 'marker') continue;
      if (bitmapMode) {
        // Later writes known only to the bitmap may overlap: replaying could undo them.
        dirty.push({ offset: record.offset, length: record.length });
      } else if (record.kind === 'write' && record.data !== undefined) {
        this.#alloc.markAllocated(record.offset, record.length);
        await this.#io.writeFully(record.data, record.offset);
      } else {
        await this.#zeroImage(record.offset, record.length);
      }
    }
    if (dirty.length > 0) await this.journal.markDirty(dirty);
    await this.#imageCommit.sync();
  }

  #checkRange(what: string, offset: number, length: number): void {
    checkRange(what, offset, length, {
      size: this.size,
      label: `disk '${this.#imagePath}'`,
      closed: this.#closed,
    });
  }

  /** Registers an operation; must be called in the same synchronous step as its journal append. */
  #begin(offset: number, length: number): { op: InFlight; prior: Promise<void>[]; finish: () => void } {
    const end = offset + length;
    const prior: Promise<void>[] = [];
    for (const other of this.#inFlight) {
      if (other.start < end && offset < other.end) prior.push(other.done);
    }
    let finish = (): void => {};
    const done = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const op: InFlight = { start: offset, end, done };
    this.#inFlight.add(op);
    return {
      op,
      prior,
      finish: () => {
        this.#inFlight.delete(op);
        finish();
      },
    };
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    this.#checkRange('read', offset, length);
    return this.#io.readFully(offset, length, into);
  }

  async write(offset: number, data: Buffer, options: WriteOptions): Promise<void> {
    this.#checkRange('write', offset, data.length);
    if (data.length === 0) return;
    const { prior, finish } = this.#begin(offset, data.length);
    try {
      await this.journal.recordWrite(offset, data, {
        apply: async () => {
          await Promise.all(prior);
          this.#alloc.markAllocated(offset, data.length);
          await this.#io.writeFully(data, offset);
        },
        readBack: () => this.#io.readFully(offset, data.length),
      });
    } finally {
      finish();
    }
    if (options.fua) await this.#syncBoth();
  }

  async trim(offset: number, length: number, options: WriteOptions): Promise<void> {
    await this.#zeroRange('trim', offset, length, options.fua);
  }

  async writeZeroes(
    offset: number,
    length: number,
    options: WriteOptions & { mayTrim: boolean },
  ): Promise<void> {
    await this.#zeroRange('zero', offset, length, options.fua);
  }

  async #zeroRange(kind: 'trim' | 'zero', offset: number, length: number, fua: boolean): Promise<void> {
    this.#checkRange(kind === 'trim' ? 'trim' : 'write zeroes', offset, length);
    if (length === 0) return;
    const { prior, finish } = this.#begin(offset, length);
    const image = {
      apply: async () => {
        await Promise.all(prior);
        await this.#zeroImage(offset, length);
      },
      readBack: () => this.#io.readFully(offset, length),
    };
    try {
      await (kind === 'trim'
        ? this.journal.recordTrim(offset, length, image)
        : this.journal.recordZero(offset, length, image));
    } finally {
      finish();
    }
    if (fua) await this.#syncBoth();
  }

  /** Zeroes a range of the image (no fallocate in Node): skips chunks already holes, marks wholly covered ones as holes. */
  async #zeroImage(offset: number, length: number): Promise<void> {
    const chunk = this.#alloc.chunkSize;
    const zeroes = Buffer.alloc(Math.min(ZERO_BLOCK, length));
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const chunkEnd = Math.min(end, (Math.floor(pos / chunk) + 1) * chunk);
      if (this.#alloc.isAllocated(pos)) {
        for (let at = pos; at < chunkEnd; at += zeroes.length) {
          await this.#io.writeFully(zeroes.subarray(0, Math.min(zeroes.length, chunkEnd - at)), at);
        }
      }
      pos = chunkEnd;
    }
    this.#alloc.markHoles(offset, length);
  }

  async #syncBoth(): Promise<void> {
    await Promise.all([this.#imageCommit.sync(), this.journal.sync()]);
  }

  /**
   * Makes every acknowledged write durable in the image and the journal, then
   * appends the journal's flush record: a crash-consistent point the image holds.
   * `point`, asked at the instant the record would be appended: false makes
   * it a durability barrier only (no record), for an image that is not yet a
   * consistent copy (a server's md leg being resynced).
   */
  async flush(options: { point?: () => boolean } = {}): Promise<void> {
    if (this.#closed)
      throw new HavenError('operation_not_allowed', `disk '${this.#imagePath}' is closed`, {});
    await Promise.all([...this.#inFlight].map((op) => op.done));
    await this.#imageCommit.sync();
    if (options.point === undefined || options.point()) await this.journal.flush();
    else await this.journal.sync();
  }

  async blockStatus(offset: number, length: number): Promise<BlockExtent[]> {
    this.#checkRange('block status', offset, length);
    if (length === 0) length = Math.min(1, this.size - offset);
    return this.#alloc.extents(offset, length);
  }

  /**
   * Begins a resync after a journal overflow (see WriteJournal.beginResync),
   * waiting until writes acknowledged through the bitmap have reached the image.
   */
  async beginResync(): Promise<ResyncPlan> {
    const plan = await this.journal.beginResync();
    await Promise.all([...this.#inFlight].map((op) => op.done));
    await this.#imageCommit.sync();
    return plan;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#inFlight].map((op) => op.done));
    await this.#imageCommit.sync();
    await this.#imageCommit.idle();
    await this.journal.close();
    await this.#alloc.persist(true, (await this.#fh.stat()).mtimeMs);
    await this.#fh.close();
  }
}
