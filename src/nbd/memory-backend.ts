import { HavenError } from '../errors/index.ts';
import type { BlockBackend, BlockExtent, WriteOptions } from './block-backend.ts';
import { BlockState } from './constants.ts';

export interface MemoryBackendOptions {
  size: number;
  /** Allocation granularity: holes are whole pages. Default 64 KiB. */
  pageSize?: number;
  readOnly?: boolean;
  canTrim?: boolean;
  canWriteZeroes?: boolean;
}

/**
 * A sparse in-memory disk, for tests: unwritten pages are holes that read as
 * zeroes, so block status has real extents to report. Counts flushes and FUA
 * writes so tests can check durability requests reach the backend.
 */
export class MemoryBackend implements BlockBackend {
  readonly size: number;
  readonly pageSize: number;
  readonly readOnly: boolean;
  readonly canTrim: boolean;
  readonly canWriteZeroes: boolean;
  flushes = 0;
  fuaWrites = 0;
  readonly #pages = new Map<number, Buffer>();

  constructor(options: MemoryBackendOptions) {
    this.size = options.size;
    this.pageSize = options.pageSize ?? 64 * 1024;
    this.readOnly = options.readOnly ?? false;
    this.canTrim = options.canTrim ?? true;
    this.canWriteZeroes = options.canWriteZeroes ?? true;
  }

  /** Bytes held in allocated pages. */
  get allocatedBytes(): number {
    return this.#pages.size * this.pageSize;
  }

  #check(op: string, offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new HavenError('bad_request', `${op} at ${offset}+${length}: not a valid range`);
    }
    if (offset + length > this.size) {
      throw new HavenError('bad_request', `${op} at ${offset}+${length} ends past the size ${this.size}`);
    }
    if (op !== 'read' && op !== 'block status' && this.readOnly) {
      throw new HavenError('forbidden', `${op} refused: the memory disk is read-only`);
    }
  }

  /** Calls `fn` for each page-sized piece of [offset, offset+length). */
  #pieces(
    offset: number,
    length: number,
    fn: (page: number, from: number, to: number, done: number) => void,
  ): void {
    let done = 0;
    while (done < length) {
      const at = offset + done;
      const page = Math.floor(at / this.pageSize);
      const from = at - page * this.pageSize;
      const to = Math.min(this.pageSize, from + (length - done));
      fn(page, from, to, done);
      done += to - from;
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.#check('read', offset, length);
    const out = Buffer.alloc(length);
    this.#pieces(offset, length, (page, from, to, done) => {
      this.#pages.get(page)?.copy(out, done, from, to);
    });
    return out;
  }

  async write(offset: number, data: Buffer, options: WriteOptions): Promise<void> {
    this.#check('write', offset, data.length);
    this.#pieces(offset, data.length, (page, from, to, done) => {
      let buf = this.#pages.get(page);
      if (!buf) {
        buf = Buffer.alloc(this.pageSize);
        this.#pages.set(page, buf);
      }
      data.copy(buf, from, done, done + (to - from));
    });
    if (options.fua) this.fuaWrites++;
  }

  async flush(): Promise<void> {
    this.flushes++;
  }

  async trim(offset: number, length: number, options: WriteOptions): Promise<void> {
    this.#check('trim', offset, length);
    this.#zero(offset, length, true);
    if (options.fua) this.fuaWrites++;
  }

  async writeZeroes(
    offset: number,
    length: number,
    options: WriteOptions & { mayTrim: boolean },
  ): Promise<void> {
    this.#check('write zeroes', offset, length);
    this.#zero(offset, length, options.mayTrim);
    if (options.fua) this.fuaWrites++;
  }

  #zero(offset: number, length: number, punch: boolean): void {
    this.#pieces(offset, length, (page, from, to) => {
      const buf = this.#pages.get(page);
      if (punch && from === 0 && to === this.pageSize) this.#pages.delete(page);
      else if (buf) buf.fill(0, from, to);
      else if (!punch) this.#pages.set(page, Buffer.alloc(this.pageSize));
    });
  }

  async blockStatus(offset: number, length: number): Promise<BlockExtent[]> {
    this.#check('block status', offset, length);
    const extents: BlockExtent[] = [];
    this.#pieces(offset, length, (page, from, to, done) => {
      const flags = this.#pages.has(page) ? 0 : BlockState.HOLE | BlockState.ZERO;
      const last = extents.at(-1);
      if (last && last.flags === flags) last.length += to - from;
      else extents.push({ offset: offset + done, length: to - from, flags });
    });
    return extents;
  }

  async close(): Promise<void> {}
}
