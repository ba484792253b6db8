import { type FileHandle, open } from 'node:fs/promises';
import type { BlockExtent } from '../nbd/block-backend.ts';
import { GroupCommit } from '../storage/group-commit.ts';
import { AllocationMap } from '../storage/index.ts';

const ZERO_BLOCK = 1 << 20;

export async function writeFully(fh: FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/** Reads exactly `length` bytes (zeroes past the end of the file). */
export async function readFully(fh: FileHandle, into: Buffer, at: number, position: number, length: number) {
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(into, at + got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  into.fill(0, at + got, at + length);
}

/**
 * A replica's base image: a raw sparse file plus its allocation map, which is
 * kept valid on disk at every moment (write-ahead): chunks are persisted as
 * allocated before data is written to them, and persisted as holes only after
 * their zeroes are durable. A crash in the middle of a merge or a sync therefore
 * never leaves a chunk that the map calls a hole but that holds data.
 */
export class BaseImage {
  readonly size: number;
  readonly #fh: FileHandle;
  readonly #map: AllocationMap;
  /** Chunks marked as holes whose zeroes are not yet known durable. */
  #mapDirty = false;
  /**
   * Saves of the map, one at a time (they share one temporary file); callers
   * that change the map while one runs share the next, so concurrent writes to
   * new chunks cost one save, not one each.
   */
  readonly #mapSave: GroupCommit;
  #lastSave: Promise<void> = Promise.resolve();
  /**
   * A copy is rewriting the image (see `beginCopy`): the map on disk is
   * marked unclean and chunks are reserved in memory only.
   */
  #copying = false;

  private constructor(fh: FileHandle, map: AllocationMap, size: number) {
    this.#fh = fh;
    this.#map = map;
    this.size = size;
    this.#mapSave = new GroupCommit(() => this.#saveMap());
  }

  static async open(path: string, size: number): Promise<BaseImage> {
    const fh = await open(path, 'r+');
    try {
      const { map } = await AllocationMap.open(path, fh, size, 65536);
      // Kept valid by write-ahead: mark it clean so a later open never rescans the image.
      await map.persist(true);
      return new BaseImage(fh, map, size);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  get handle(): FileHandle {
    return this.#fh;
  }

  /**
   * A copy (a sync) starts rewriting the image: from now on until `endCopy`,
   * chunks are reserved without saving the map each time. Instead the map on
   * disk says it is unclean, so an open after a crash checks every chunk it
   * calls a hole again (as after an unclean shutdown of the disk service):
   * write-ahead would cost a journal commit, which flushes all data written
   * so far, per batch of new chunks.
   */
  async beginCopy(): Promise<void> {
    if (this.#copying) return;
    this.#copying = true;
    this.#lastSave = this.#mapSave.sync();
    await this.#lastSave;
  }

  /** The copy is complete: makes the data durable, then saves the map as clean. */
  async endCopy(): Promise<void> {
    await this.#fh.datasync();
    this.#copying = false;
    await this.#mapSave.sync();
  }

  /** Persists chunks of these ranges as allocated before any data is written to them (see `beginCopy`). */
  async reserve(ranges: readonly { offset: number; length: number }[]): Promise<void> {
    let changed = false;
    for (const r of ranges) {
      if (r.length === 0) continue;
      const chunk = this.#map.chunkSize;
      for (let c = Math.floor(r.offset / chunk); c * chunk < r.offset + r.length; c++) {
        if (!this.#map.isAllocated(c * chunk)) {
          changed = true;
          break;
        }
      }
      this.#map.markAllocated(r.offset, r.length);
    }
    if (changed && !this.#copying) this.#lastSave = this.#mapSave.sync();
    // A concurrent caller may have marked these chunks: wait for the save that includes them.
    await this.#lastSave;
  }

  /** The map carries pending holes too: their zeroes are made durable before it is saved. */
  async #saveMap(): Promise<void> {
    while (this.#mapDirty) {
      this.#mapDirty = false;
      await this.#fh.datasync();
    }
    // Takes the map as it is now, synchronously after the last check.
    await this.#map.persist(!this.#copying);
  }

  /** Writes data to chunks reserved beforehand. */
  write(offset: number, data: Buffer): Promise<void> {
    return writeFully(this.#fh, data, offset);
  }

  /** Zeroes a range: writes zeroes only where chunks hold data; whole chunks become holes at the next sync. */
  async zero(offset: number, length: number): Promise<void> {
    const chunk = this.#map.chunkSize;
    const zeroes = Buffer.alloc(Math.min(ZERO_BLOCK, length));
    const end = offset + length;
    for (let pos = offset; pos < end; ) {
      const chunkEnd = Math.min(end, (Math.floor(pos / chunk) + 1) * chunk);
      if (this.#map.isAllocated(pos)) {
        for (let at = pos; at < chunkEnd; at += zeroes.length) {
          await writeFully(this.#fh, zeroes.subarray(0, Math.min(zeroes.length, chunkEnd - at)), at);
        }
      }
      pos = chunkEnd;
    }
    const [from, to] = this.#map.wholeChunks(offset, length);
    let hadData = false;
    for (let c = from; c < to && !hadData; c++) hadData = this.#map.isAllocated(c * chunk);
    // Chunks that were holes already change nothing: no save (with its sync of all data) for them.
    if (hadData) {
      this.#map.markHoles(offset, length);
      this.#mapDirty = true;
    }
  }

  /** Makes the data durable, then the map (holes are recorded only once their zeroes are on disk). */
  async sync(): Promise<void> {
    await this.#fh.datasync();
    if (this.#mapDirty) await this.#mapSave.sync();
  }

  read(into: Buffer, at: number, position: number, length: number): Promise<void> {
    return readFully(this.#fh, into, at, position, length);
  }

  extents(offset: number, length: number): BlockExtent[] {
    return this.#map.extents(offset, length);
  }

  async close(): Promise<void> {
    await this.sync();
    await this.#fh.close();
  }
}
