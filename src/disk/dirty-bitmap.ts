import { type FileHandle, open } from 'node:fs/promises';
import { HavenError } from '../errors/index.ts';
import { Bitset } from '../storage/bitset.ts';
import type { FileSync } from '../storage/file-sync.ts';
import { GroupCommit } from '../storage/group-commit.ts';
import { PRIVATE_FILE_MODE } from '../storage/private-files.ts';

/** A byte range of the disk. */
export interface Region {
  offset: number;
  length: number;
}

const MAGIC = 0x42445648; // 'HVDB'
const HEADER_SIZE = 32;

/**
 * The persisted dirty-region bitmap the journal falls back to when it is full
 * (DRBD's quick-resync bitmap). A region's bit is durable before the write to
 * it is acknowledged, so no acknowledged write is ever forgotten, even across
 * a crash; writes to regions already dirty cost no extra sync.
 *
 * File: header (magic, version, region size, disk size) then one bit per region.
 */
export class DirtyBitmap {
  readonly regionSize: number;
  readonly diskSize: number;
  readonly #fh: FileHandle;
  readonly #bits: Bitset;
  readonly #commit: GroupCommit;
  /** Resolves when every bit set so far is durable: a write to an already-dirty region waits on it. */
  #allDurable: Promise<void> = Promise.resolve();

  private constructor(
    fh: FileHandle,
    regionSize: number,
    diskSize: number,
    bits: Bitset,
    fileSync: FileSync,
  ) {
    this.#fh = fh;
    this.regionSize = regionSize;
    this.diskSize = diskSize;
    this.#bits = bits;
    this.#commit = new GroupCommit(() => fileSync.datasync(fh));
  }

  static async open(
    path: string,
    diskSize: number,
    regionSize: number,
    fileSync: FileSync,
  ): Promise<DirtyBitmap> {
    const count = Math.ceil(diskSize / regionSize);
    let fh: FileHandle;
    try {
      fh = await open(path, 'r+');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      fh = await open(path, 'w+', PRIVATE_FILE_MODE);
      const header = Buffer.alloc(HEADER_SIZE);
      header.writeUInt32LE(MAGIC, 0);
      header.writeUInt32LE(1, 4);
      header.writeUInt32LE(regionSize, 8);
      header.writeDoubleLE(diskSize, 16);
      await fh.write(header, 0, HEADER_SIZE, 0);
      // Written, not truncated: setting a bit must never need a block the full file system lacks.
      await fh.write(Buffer.alloc(Math.ceil(count / 8)), 0, Math.ceil(count / 8), HEADER_SIZE);
      await fileSync.datasync(fh);
      return new DirtyBitmap(fh, regionSize, diskSize, new Bitset(count), fileSync);
    }
    const header = Buffer.alloc(HEADER_SIZE);
    await fh.read(header, 0, HEADER_SIZE, 0);
    const storedRegion = header.readUInt32LE(8);
    const storedSize = header.readDoubleLE(16);
    if (header.readUInt32LE(0) !== MAGIC || storedRegion !== regionSize || storedSize !== diskSize) {
      await fh.close();
      throw new HavenError(
        'conflict',
        `dirty bitmap '${path}' was made for a ${storedSize}-byte disk with ${storedRegion}-byte regions; ` +
          `this disk is ${diskSize} bytes with ${regionSize}-byte regions. Resync the disk and remove the bitmap.`,
        { path, storedSize, storedRegion, diskSize, regionSize },
      );
    }
    const bytes = new Uint8Array(Math.ceil(count / 8));
    await fh.read(bytes, 0, bytes.length, HEADER_SIZE);
    // Bitmaps made sparse by earlier versions get their blocks now, while there may be room.
    await fh.write(bytes, 0, bytes.length, HEADER_SIZE);
    return new DirtyBitmap(fh, regionSize, diskSize, new Bitset(count, bytes), fileSync);
  }

  #range(offset: number, length: number): [number, number] {
    const from = Math.floor(offset / this.regionSize);
    const to = Math.min(this.#bits.count, Math.ceil((offset + Math.max(length, 1)) / this.regionSize));
    return [from, to];
  }

  /** Marks the regions of a byte range dirty; resolves once that is durable. */
  async markDirty(offset: number, length: number): Promise<void> {
    const [from, to] = this.#range(offset, length);
    if (this.#bits.set(from, to) > 0) {
      const durable = this.#writeBits(from, to).then(() => this.#commit.sync());
      const all = Promise.all([this.#allDurable, durable]).then(() => {});
      all.catch(() => {});
      this.#allDurable = all;
      await durable;
    } else {
      // The bits may have been set by a write whose sync has not finished yet.
      await this.#allDurable;
    }
  }

  /** Clears the regions of a byte range (after they have been resynced); durable on return. */
  async clear(regions: readonly Region[]): Promise<void> {
    let lo = Number.POSITIVE_INFINITY;
    let hi = 0;
    for (const r of regions) {
      // Only whole regions inside the range are clean now.
      const from = Math.ceil(r.offset / this.regionSize);
      const end =
        r.offset + r.length >= this.diskSize
          ? this.#bits.count
          : Math.floor((r.offset + r.length) / this.regionSize);
      if (end <= from) continue;
      this.#bits.clear(from, end);
      lo = Math.min(lo, from);
      hi = Math.max(hi, end);
    }
    if (hi > lo) {
      await this.#writeBits(lo, hi);
      await this.#commit.sync();
    }
  }

  async #writeBits(from: number, to: number): Promise<void> {
    const start = from >> 3;
    const end = (to + 7) >> 3;
    await this.#fh.write(this.#bits.bits, start, end - start, HEADER_SIZE + start);
  }

  get anyDirty(): boolean {
    return this.#bits.any();
  }

  isDirty(offset: number): boolean {
    return this.#bits.get(Math.floor(offset / this.regionSize));
  }

  /** Dirty regions as merged byte ranges, clipped to the disk. */
  regions(): Region[] {
    const out: Region[] = [];
    for (const run of this.#bits.runs()) {
      if (!run.set) continue;
      const offset = run.start * this.regionSize;
      out.push({ offset, length: Math.min(run.end * this.regionSize, this.diskSize) - offset });
    }
    return out;
  }

  async close(): Promise<void> {
    await this.#commit.idle();
    await this.#fh.close();
  }
}
