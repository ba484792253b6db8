import { type FileHandle, readFile, stat } from 'node:fs/promises';
import { writeFileAtomic } from './atomic-file.ts';
import { Bitset } from './bitset.ts';
import type { BlockExtent } from './block-extent.ts';

const MAGIC = 0x41415648; // 'HVAA'
const HEADER_SIZE = 32;
const SCAN_BLOCK = 4 << 20;

export function allocationMapPath(imagePath: string): string {
  return `${imagePath}.haven-alloc`;
}

/**
 * Which chunks of an image hold data, for BLOCK_STATUS (Node cannot ask the
 * file system with SEEK_DATA/SEEK_HOLE). The rule it keeps: a chunk marked as
 * a hole reads as zeroes. Chunks are marked allocated before data is written;
 * the map is persisted beside the image on close with a `clean` flag, and after
 * an unclean shutdown the chunks it calls holes are checked again.
 *
 * File: header (magic, version, clean, chunk size, image size, image mtime at the
 * last clean save) then one bit per chunk (1 = data).
 */
export class AllocationMap {
  readonly chunkSize: number;
  readonly imageSize: number;
  readonly #path: string;
  readonly #bits: Bitset;

  private constructor(path: string, imageSize: number, chunkSize: number, bits: Bitset) {
    this.#path = path;
    this.imageSize = imageSize;
    this.chunkSize = chunkSize;
    this.#bits = bits;
  }

  /**
   * Loads the map of an image, scanning the image when there is no usable map
   * (every chunk, or only the holes after an unclean shutdown), and marks it
   * in use (unclean) until `persist(true)`.
   */
  static async open(
    imagePath: string,
    image: FileHandle,
    imageSize: number,
    chunkSize: number,
  ): Promise<{ map: AllocationMap; unclean: boolean; scanned: boolean }> {
    const path = allocationMapPath(imagePath);
    const count = Math.ceil(imageSize / chunkSize);
    let stored: Buffer | null = null;
    try {
      stored = await readFile(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const usable =
      stored !== null &&
      stored.length === HEADER_SIZE + Math.ceil(count / 8) &&
      stored.readUInt32LE(0) === MAGIC &&
      stored.readUInt32LE(12) === chunkSize &&
      stored.readDoubleLE(16) === imageSize;
    let map: AllocationMap;
    let unclean = false;
    let scanned = false;
    if (usable && stored !== null) {
      map = new AllocationMap(
        path,
        imageSize,
        chunkSize,
        new Bitset(count, Uint8Array.from(stored.subarray(HEADER_SIZE))),
      );
      if (stored.readUInt32LE(8) !== 1) {
        unclean = true;
        await map.#scan(image, false);
      } else if (stored.readDoubleLE(24) !== (await image.stat()).mtimeMs) {
        // Written by something other than the disk service since the map was
        // saved (the machine ran without Haven): chunks the map calls holes may
        // hold data now, and reporting them as holes would leave them out of
        // the initial copy. Check them again.
        await map.#scan(image, false);
        scanned = true;
      }
    } else {
      map = new AllocationMap(path, imageSize, chunkSize, new Bitset(count));
      await map.#scan(image, true);
      scanned = true;
    }
    await map.persist(false);
    return { map, unclean, scanned };
  }

  /** The map of a new, all-hole image. */
  static async create(imagePath: string, imageSize: number, chunkSize: number): Promise<void> {
    const map = new AllocationMap(
      allocationMapPath(imagePath),
      imageSize,
      chunkSize,
      new Bitset(Math.ceil(imageSize / chunkSize)),
    );
    await map.persist(true, (await stat(imagePath)).mtimeMs);
  }

  /** Zero-detects chunks: all of them, or only those currently marked as holes. */
  async #scan(image: FileHandle, all: boolean): Promise<void> {
    const blockChunks = Math.max(1, Math.floor(SCAN_BLOCK / this.chunkSize));
    const buf = Buffer.allocUnsafe(blockChunks * this.chunkSize);
    const zero = Buffer.alloc(this.chunkSize);
    for (let first = 0; first < this.#bits.count; first += blockChunks) {
      const last = Math.min(this.#bits.count, first + blockChunks);
      if (!all) {
        let anyHole = false;
        for (let c = first; c < last && !anyHole; c++) anyHole = !this.#bits.get(c);
        if (!anyHole) continue;
      }
      const start = first * this.chunkSize;
      const want = Math.min(this.imageSize, last * this.chunkSize) - start;
      let got = 0;
      while (got < want) {
        const { bytesRead } = await image.read(buf, got, want - got, start + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      buf.fill(0, got, want);
      for (let c = first; c < last; c++) {
        if (this.#bits.get(c)) continue;
        const a = (c - first) * this.chunkSize;
        const b = Math.min(want, a + this.chunkSize);
        if (!buf.subarray(a, b).equals(zero.subarray(0, b - a))) this.#bits.set(c, c + 1);
      }
    }
  }

  /**
   * Saves the map. A clean save records the image's modification time, so a
   * later open can tell whether anything else wrote to the image meanwhile.
   */
  async persist(clean: boolean, imageMtimeMs = 0): Promise<void> {
    const header = Buffer.alloc(HEADER_SIZE);
    header.writeUInt32LE(MAGIC, 0);
    header.writeUInt32LE(1, 4);
    header.writeUInt32LE(clean ? 1 : 0, 8);
    header.writeUInt32LE(this.chunkSize, 12);
    header.writeDoubleLE(this.imageSize, 16);
    header.writeDoubleLE(imageMtimeMs, 24);
    await writeFileAtomic(this.#path, Buffer.concat([header, this.#bits.bits]));
  }

  isAllocated(offset: number): boolean {
    return this.#bits.get(Math.floor(offset / this.chunkSize));
  }

  /** Marks every chunk touched by the range as holding data. */
  markAllocated(offset: number, length: number): void {
    if (length === 0) return;
    this.#bits.set(Math.floor(offset / this.chunkSize), Math.ceil((offset + length) / this.chunkSize));
  }

  /** Marks the chunks wholly inside the range as holes (the caller has zeroed them). */
  markHoles(offset: number, length: number): void {
    const [from, to] = this.wholeChunks(offset, length);
    if (to > from) this.#bits.clear(from, to);
  }

  /** Chunks [from, to) lying wholly inside the range; the image's short last chunk counts as whole. */
  wholeChunks(offset: number, length: number): [number, number] {
    const end = offset + length;
    const from = Math.ceil(offset / this.chunkSize);
    const to = end >= this.imageSize ? this.#bits.count : Math.floor(end / this.chunkSize);
    return [from, Math.max(from, to)];
  }

  /** Extents from `offset` covering `length` bytes: data (flags 0) or hole reading as zeroes (flags 3). */
  extents(offset: number, length: number): BlockExtent[] {
    const end = Math.min(this.imageSize, offset + length);
    const out: BlockExtent[] = [];
    const first = Math.floor(offset / this.chunkSize);
    const last = Math.ceil(end / this.chunkSize);
    for (const run of this.#bits.runs(first, last)) {
      const a = Math.max(offset, run.start * this.chunkSize);
      const b = Math.min(end, run.end * this.chunkSize);
      out.push({ offset: a, length: b - a, flags: run.set ? 0 : 3 });
    }
    return out;
  }
}
