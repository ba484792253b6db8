import { HavenError } from '../errors/index.ts';
import type { BlockBackend, BlockExtent } from '../nbd/block-backend.ts';
import type { BaseImage } from './base-image.ts';
import { readFully } from './base-image.ts';
import { ExtentMap } from './extent-map.ts';
import type { IndexedRecord, Segment } from './segment-log.ts';

/** Allocation flags of NBD base:allocation. */
const DATA = 0;
const ZERO = 2;
const HOLE_ZERO = 3;

/**
 * Builds the extent map of the disk at a point from the records after the base
 * (in sequence order): time and memory follow the number of records, never the
 * size of the disk.
 */
export function buildExtentMap(records: Iterable<IndexedRecord>): ExtentMap<IndexedRecord> {
  const map = new ExtentMap<IndexedRecord>();
  for (const r of records) {
    if (r.kind === 'write' || r.kind === 'trim' || r.kind === 'zero')
      map.set(r.offset, r.offset + r.length, r);
  }
  return map;
}

export function checkRange(name: string, size: number, what: string, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new HavenError('bad_request', `${what}: offset and length must be non-negative integers`, {
      offset,
      length,
    });
  }
  if (offset + length > size) {
    throw new HavenError(
      'bad_request',
      `${what} of ${length} bytes at ${offset} goes past the end of the ${size}-byte view '${name}'`,
      { offset, length, size },
    );
  }
}

/**
 * A read-only view of a replica disk at one point: the base image with the
 * retained records up to the point laid over it. The records' segments are
 * referenced (they stay readable even if a merge deletes them) and the point is
 * pinned against merges past it until the view is closed.
 */
export class PointView implements BlockBackend {
  readonly name: string;
  readonly size: number;
  readonly seq: number;
  readonly readOnly: boolean = true;
  readonly canTrim: boolean = false;
  readonly canWriteZeroes: boolean = false;
  readonly #base: BaseImage;
  readonly #map: ExtentMap<IndexedRecord>;
  readonly #segments: Segment[];
  readonly #onClose: () => void;
  #closed = false;

  constructor(
    name: string,
    seq: number,
    base: BaseImage,
    records: readonly IndexedRecord[],
    onClose: () => void,
  ) {
    this.name = name;
    this.seq = seq;
    this.size = base.size;
    this.#base = base;
    this.#map = buildExtentMap(records);
    this.#segments = [...new Set(records.map((r) => r.segment))];
    for (const s of this.#segments) s.retain();
    this.#onClose = onClose;
  }

  /** Extents the view's records cover (for tests and diagnostics). */
  get extentCount(): number {
    return this.#map.count;
  }

  #check(what: string, offset: number, length: number): void {
    if (this.#closed) {
      throw new HavenError('operation_not_allowed', `view '${this.name}' is closed`, { view: this.name });
    }
    checkRange(this.name, this.size, what, offset, length);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.#check('read', offset, length);
    const buf = Buffer.allocUnsafe(length);
    await this.readInto(buf, 0, offset, length);
    return buf;
  }

  /** Reads [offset, offset + length) of the view into `buf` at `at`. */
  async readInto(buf: Buffer, at: number, offset: number, length: number): Promise<void> {
    const reads: Promise<void>[] = [];
    for (const piece of this.#map.walk(offset, offset + length)) {
      const into = at + piece.start - offset;
      const n = piece.end - piece.start;
      const r = piece.value;
      if (r === null) reads.push(this.#base.read(buf, into, piece.start, n));
      else if (r.kind === 'write') {
        reads.push(readFully(r.segment.fh, buf, into, r.dataPos + piece.start - r.offset, n));
      } else buf.fill(0, into, into + n);
    }
    await Promise.all(reads);
  }

  async blockStatus(offset: number, length: number): Promise<BlockExtent[]> {
    this.#check('block status', offset, length);
    if (length === 0) length = Math.min(1, this.size - offset);
    const out: BlockExtent[] = [];
    const push = (e: BlockExtent) => {
      const last = out.at(-1);
      if (last !== undefined && last.flags === e.flags && last.offset + last.length === e.offset) {
        last.length += e.length;
      } else out.push({ ...e });
    };
    for (const piece of this.#map.walk(offset, offset + length)) {
      const r = piece.value;
      const n = piece.end - piece.start;
      if (r === null) for (const e of this.#base.extents(piece.start, n)) push(e);
      else
        push({
          offset: piece.start,
          length: n,
          flags: r.kind === 'write' ? DATA : r.kind === 'trim' ? HOLE_ZERO : ZERO,
        });
    }
    return out;
  }

  write(): Promise<void> {
    return this.#refuse('write');
  }

  trim(): Promise<void> {
    return this.#refuse('trim');
  }

  writeZeroes(): Promise<void> {
    return this.#refuse('write zeroes');
  }

  async flush(): Promise<void> {}

  #refuse(what: string): Promise<void> {
    return Promise.reject(
      new HavenError('operation_not_allowed', `view '${this.name}' is read-only: ${what} refused`, {
        view: this.name,
        allowed: ['read', 'blockStatus'],
      }),
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#segments) await s.release();
    this.#onClose();
  }
}
