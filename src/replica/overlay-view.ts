import { type FileHandle, mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ResyncPlan, WriteJournal } from '../disk/index.ts';
import { HavenError } from '../errors/index.ts';
import type { BlockBackend, BlockExtent, WriteOptions } from '../nbd/block-backend.ts';
import { writeFileAtomic } from '../storage/atomic-file.ts';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../storage/private-files.ts';
import { readFully, writeFully } from './base-image.ts';
import { checkRange, type PointView } from './point-view.ts';

/** Chunk states: still the point's bytes, copied up into the overlay, or zeroed by the view. */
const LOWER = 0;
const DATA = 1;
const ZERO = 2;
const MAP_MAGIC = 0x4f564148; // 'HAVO'
const MAP_HEADER = 16;

export interface OverlayOptions {
  /** Capacity of the view's own write journal (default 1 GiB). */
  journalCapacityBytes?: number;
  journalSegmentBytes?: number;
  /** Granularity of the journal's dirty bitmap (diverged regions, overflow); fixed when the view is made. */
  journalRegionSize?: number;
  chunkSize?: number;
}

/**
 * A writable view: a copy-on-write overlay (sparse file + chunk map) over a
 * read-only point view. Its writes are journaled first, like any disk-service
 * disk, so reprotect can send them back. The chunk map is persisted at each
 * flush with the journal sequence it reflects; reopening replays the journal
 * records after it, so flushed writes survive a crash.
 */
export class OverlayView implements BlockBackend {
  readonly name: string;
  readonly size: number;
  readonly readOnly = false;
  readonly canTrim = true;
  readonly canWriteZeroes = true;
  readonly journal: WriteJournal;
  readonly lower: PointView;
  readonly chunkSize: number;
  readonly #fh: FileHandle;
  readonly #states: Uint8Array;
  readonly #mapPath: string;
  #chain: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(
    name: string,
    lower: PointView,
    fh: FileHandle,
    states: Uint8Array,
    chunkSize: number,
    mapPath: string,
    journal: WriteJournal,
  ) {
    this.name = name;
    this.lower = lower;
    this.size = lower.size;
    this.#fh = fh;
    this.#states = states;
    this.chunkSize = chunkSize;
    this.#mapPath = mapPath;
    this.journal = journal;
  }

  /** Opens (or creates) the overlay in `dir` over `lower`, which it closes when closed. */
  static async open(name: string, lower: PointView, dir: string, options: OverlayOptions = {}) {
    const chunkSize = options.chunkSize ?? 65536;
    await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    const count = Math.ceil(lower.size / chunkSize);
    const mapPath = join(dir, 'overlay.map');
    let states = new Uint8Array(count);
    let throughSeq = 0;
    try {
      const stored = await readFile(mapPath);
      if (stored.readUInt32LE(0) !== MAP_MAGIC || stored.length !== MAP_HEADER + count) {
        throw new HavenError('internal', `overlay map '${mapPath}' does not match a ${lower.size}-byte view`);
      }
      throughSeq = stored.readDoubleLE(8);
      states = Uint8Array.from(stored.subarray(MAP_HEADER));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const fh = await open(join(dir, 'overlay.img'), 'a+', PRIVATE_FILE_MODE).then(async (h) => {
      await h.close();
      return open(join(dir, 'overlay.img'), 'r+');
    });
    await fh.truncate(lower.size);
    const journal = await WriteJournal.open(join(dir, 'journal'), {
      diskSize: lower.size,
      capacityBytes: options.journalCapacityBytes ?? 1 << 30,
      ...(options.journalSegmentBytes === undefined ? {} : { segmentBytes: options.journalSegmentBytes }),
      ...(options.journalRegionSize === undefined ? {} : { regionSize: options.journalRegionSize }),
    });
    const view = new OverlayView(name, lower, fh, states, chunkSize, mapPath, journal);
    // Writes journaled after the last persisted map may not have reached the overlay: replay them.
    const from = Math.max(throughSeq + 1, journal.status.firstSeq);
    for await (const r of journal.records(from)) {
      if (r.kind === 'write' && r.data !== undefined) await view.#applyWrite(r.offset, r.data);
      else if (r.kind === 'trim' || r.kind === 'zero') await view.#applyZero(r.offset, r.length);
    }
    await view.#persist();
    return view;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(fn, fn);
    this.#chain = run.catch(() => {});
    return run;
  }

  #check(what: string, offset: number, length: number): void {
    if (this.#closed) {
      throw new HavenError('operation_not_allowed', `view '${this.name}' is closed`, { view: this.name });
    }
    checkRange(this.name, this.size, what, offset, length);
  }

  /** Runs of chunks with the same state across [offset, offset + length). */
  *#runs(offset: number, length: number): Generator<{ start: number; end: number; state: number }> {
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const c = Math.floor(pos / this.chunkSize);
      const state = this.#states[c] as number;
      let next = c + 1;
      while (next * this.chunkSize < end && this.#states[next] === state) next++;
      const runEnd = Math.min(end, next * this.chunkSize);
      yield { start: pos, end: runEnd, state };
      pos = runEnd;
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.#check('read', offset, length);
    const buf = Buffer.allocUnsafe(length);
    const reads: Promise<void>[] = [];
    for (const run of this.#runs(offset, length)) {
      const at = run.start - offset;
      const n = run.end - run.start;
      if (run.state === LOWER) reads.push(this.lower.readInto(buf, at, run.start, n));
      else if (run.state === DATA) reads.push(readFully(this.#fh, buf, at, run.start, n));
      else buf.fill(0, at, at + n);
    }
    await Promise.all(reads);
    return buf;
  }

  async blockStatus(offset: number, length: number): Promise<BlockExtent[]> {
    this.#check('block status', offset, length);
    if (length === 0) length = Math.min(1, this.size - offset);
    const out: BlockExtent[] = [];
    for (const run of this.#runs(offset, length)) {
      const n = run.end - run.start;
      if (run.state === LOWER) out.push(...(await this.lower.blockStatus(run.start, n)));
      else out.push({ offset: run.start, length: n, flags: run.state === DATA ? 0 : 3 });
    }
    return out;
  }

  write(offset: number, data: Buffer, options: WriteOptions): Promise<void> {
    this.#check('write', offset, data.length);
    if (data.length === 0) return Promise.resolve();
    return this.#serial(async () => {
      await this.journal.recordWrite(offset, data);
      await this.#applyWrite(offset, data);
      if (options.fua) await this.#syncAll();
    });
  }

  trim(offset: number, length: number, options: WriteOptions): Promise<void> {
    return this.#zeroing('trim', offset, length, options.fua);
  }

  writeZeroes(offset: number, length: number, options: WriteOptions & { mayTrim: boolean }): Promise<void> {
    return this.#zeroing('zero', offset, length, options.fua);
  }

  #zeroing(kind: 'trim' | 'zero', offset: number, length: number, fua: boolean): Promise<void> {
    this.#check(kind === 'trim' ? 'trim' : 'write zeroes', offset, length);
    if (length === 0) return Promise.resolve();
    return this.#serial(async () => {
      await (kind === 'trim'
        ? this.journal.recordTrim(offset, length)
        : this.journal.recordZero(offset, length));
      await this.#applyZero(offset, length);
      if (fua) await this.#syncAll();
    });
  }

  /** Copies a chunk's current bytes into the overlay before part of it is overwritten. */
  async #copyUp(c: number): Promise<void> {
    const start = c * this.chunkSize;
    const n = Math.min(this.chunkSize, this.size - start);
    const buf = Buffer.alloc(n);
    if (this.#states[c] === LOWER) await this.lower.readInto(buf, 0, start, n);
    await writeFully(this.#fh, buf, start);
    this.#states[c] = DATA;
  }

  /** Whether [offset, end) covers chunk c wholly (the short last chunk counts as whole). */
  #covers(c: number, offset: number, end: number): boolean {
    return offset <= c * this.chunkSize && end >= Math.min(this.size, (c + 1) * this.chunkSize);
  }

  async #applyWrite(offset: number, data: Buffer): Promise<void> {
    const end = offset + data.length;
    const first = Math.floor(offset / this.chunkSize);
    const last = Math.floor((end - 1) / this.chunkSize);
    for (const c of [first, last]) {
      if (this.#states[c] !== DATA && !this.#covers(c, offset, end)) await this.#copyUp(c);
    }
    await writeFully(this.#fh, data, offset);
    this.#states.fill(DATA, first, last + 1);
  }

  async #applyZero(offset: number, length: number): Promise<void> {
    const end = offset + length;
    const first = Math.floor(offset / this.chunkSize);
    const last = Math.floor((end - 1) / this.chunkSize);
    for (let c = first; c <= last; c++) {
      if (this.#covers(c, offset, end)) {
        this.#states[c] = ZERO;
        continue;
      }
      if (this.#states[c] === ZERO) continue;
      if (this.#states[c] === LOWER) await this.#copyUp(c);
      const a = Math.max(offset, c * this.chunkSize);
      const b = Math.min(end, (c + 1) * this.chunkSize);
      await writeFully(this.#fh, Buffer.alloc(b - a), a);
    }
  }

  async #persist(): Promise<void> {
    await this.#fh.datasync();
    const header = Buffer.alloc(MAP_HEADER);
    header.writeUInt32LE(MAP_MAGIC, 0);
    header.writeDoubleLE(this.journal.status.writtenSeq, 8);
    await writeFileAtomic(this.#mapPath, Buffer.concat([header, this.#states]));
  }

  async #syncAll(): Promise<void> {
    await this.#persist();
    await this.journal.sync();
  }

  /** Makes every acknowledged write durable, then journals a flush (a crash-consistent point of the view). */
  flush(): Promise<void> {
    if (this.#closed) {
      return Promise.reject(
        new HavenError('operation_not_allowed', `view '${this.name}' is closed`, { view: this.name }),
      );
    }
    return this.#serial(async () => {
      await this.#persist();
      await this.journal.flush();
    });
  }

  /**
   * Starts a resync of the journal's dirty regions (ReplicationSource, reprotect):
   * runs between writes, so every write before the resync marker is in the overlay.
   */
  beginResync(): Promise<ResyncPlan> {
    return this.#serial(() => this.journal.beginResync());
  }

  /** What the view changed: runs of chunks holding its own data, or zeroed (merged into a base by `consolidateView`). */
  changedRuns(): { offset: number; length: number; zero: boolean }[] {
    const out: { offset: number; length: number; zero: boolean }[] = [];
    for (const run of this.#runs(0, this.size)) {
      if (run.state === LOWER) continue;
      out.push({ offset: run.start, length: run.end - run.start, zero: run.state === ZERO });
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#serial(() => this.#persist());
    await this.journal.close();
    await this.#fh.close();
    await this.lower.close();
  }
}
