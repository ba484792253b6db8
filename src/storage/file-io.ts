/**
 * Positional file I/O for the servers' hot paths (image reads and writes,
 * journal appends).
 *
 * Node's asynchronous fs calls each cost a hand-off to a libuv threadpool
 * thread and back: two context switches and a wake-up of the event loop. When
 * the data is in the page cache the pread/pwrite itself takes microseconds and
 * the hand-off dominates: on a 2-core machine it was 40% of the server's time
 * and capped 4k reads at a third of `nbdkit file`'s rate. So small calls run
 * synchronously while they are fast, and move to the threadpool for a while as
 * soon as one is slow (a page-cache miss, writeback throttling), so a slow disk
 * never blocks the event loop for more than one call at a time. Large reads
 * always use the threadpool: there the copy costs more than the hand-off, and
 * threads copy in parallel with the event loop (256 KiB nbdcopy reads were
 * faster that way). Large writes do not: buffered writes to one file serialize
 * on its inode lock, and threads contending for it cost more system time than
 * they save (256 KiB nbdcopy writes: 280 MB/s on the event loop, 160-180 MB/s
 * and 1.7x the CPU on the threadpool).
 */
import * as fs from 'node:fs';

export interface FileIoPolicy {
  /** 'adaptive' (default): synchronous while calls are fast; 'async': always the threadpool. */
  mode?: 'adaptive' | 'async';
  /** Reads of more bytes than this always use the threadpool. Default 128 KiB. */
  syncMaxReadBytes?: number;
  /** A synchronous read slower than this plus `bytes / bytesPerMs` switches to the threadpool. Default 1 ms. */
  slowMs?: number;
  /**
   * The same for writes; default 10 ms. Buffered writes stall now and then
   * (block allocation, writeback throttling) and the threadpool does not make
   * those stalls shorter, while its threads contend for the file's lock.
   */
  slowWriteMs?: number;
  /** Throughput below which a large call counts as slow. Default 1 GB/s (1e6 bytes per ms). */
  bytesPerMs?: number;
  /** How long to stay on the threadpool after a slow call before trying again. Default 200 ms. */
  backoffMs?: number;
  now?: () => number;
}

/**
 * Decides, per call, whether to run synchronously. Shared by the files of one
 * disk, since a slow image usually means a slow journal too.
 */
export class SyncBudget {
  readonly #async: boolean;
  readonly #syncMaxReadBytes: number;
  readonly #slowMs: number;
  readonly #slowWriteMs: number;
  readonly #bytesPerMs: number;
  readonly #backoffMs: number;
  readonly #now: () => number;
  #asyncUntil = 0;
  /** Calls sent to the threadpool because a recent one was slow (for tests and stats). */
  deferred = 0;

  constructor(policy: FileIoPolicy = {}) {
    this.#async = policy.mode === 'async';
    this.#syncMaxReadBytes = policy.syncMaxReadBytes ?? 128 * 1024;
    this.#slowMs = policy.slowMs ?? 1;
    this.#slowWriteMs = policy.slowWriteMs ?? 10;
    this.#bytesPerMs = policy.bytesPerMs ?? 1e6;
    this.#backoffMs = policy.backoffMs ?? 200;
    this.#now = policy.now ?? performance.now.bind(performance);
  }

  /** Runs `sync` if calls have been fast, else `async`; remembers how long `sync` took. */
  run<T>(kind: 'read' | 'write', bytes: number, sync: () => T, async: () => Promise<T>): Promise<T> {
    if (this.#async || (kind === 'read' && bytes > this.#syncMaxReadBytes)) return async();
    const start = this.#now();
    if (start < this.#asyncUntil) {
      this.deferred++;
      return async();
    }
    let result: T;
    try {
      result = sync();
    } catch (e) {
      return Promise.reject(e);
    }
    const end = this.#now();
    const slow = kind === 'read' ? this.#slowMs : this.#slowWriteMs;
    if (end - start > slow + bytes / this.#bytesPerMs) this.#asyncUntil = end + this.#backoffMs;
    return Promise.resolve(result);
  }
}

function callback<T>(resolve: (v: T) => void, reject: (e: unknown) => void) {
  return (err: NodeJS.ErrnoException | null, value: T) => (err ? reject(err) : resolve(value));
}

/** pread/pwrite/pwritev on a file descriptor owned by someone else (e.g. a FileHandle's `fd`). */
export class FileIo {
  readonly fd: number;
  readonly budget: SyncBudget;

  constructor(fd: number, budget: SyncBudget = new SyncBudget()) {
    this.fd = fd;
    this.budget = budget;
  }

  read(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    const fd = this.fd;
    return this.budget.run(
      'read',
      length,
      () => fs.readSync(fd, buf, offset, length, position),
      () =>
        new Promise((resolve, reject) =>
          fs.read(fd, buf, offset, length, position, callback<number>(resolve, reject)),
        ),
    );
  }

  write(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    const fd = this.fd;
    return this.budget.run(
      'write',
      length,
      () => fs.writeSync(fd, buf, offset, length, position),
      () =>
        new Promise((resolve, reject) =>
          fs.write(fd, buf, offset, length, position, callback<number>(resolve, reject)),
        ),
    );
  }

  writev(buffers: readonly Buffer[], position: number): Promise<number> {
    const fd = this.fd;
    let bytes = 0;
    for (const b of buffers) bytes += b.length;
    return this.budget.run(
      'write',
      bytes,
      () => fs.writevSync(fd, buffers, position),
      () =>
        new Promise((resolve, reject) => fs.writev(fd, buffers, position, callback<number>(resolve, reject))),
    );
  }

  /**
   * Reads `length` bytes at `position` into `into` (when given, of exactly
   * `length` bytes) or a new buffer; bytes past the end of the file read as zeroes.
   */
  async readFully(position: number, length: number, into?: Buffer): Promise<Buffer> {
    const buf = into?.length === length ? into : Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const n = await this.read(buf, got, length - got, position + got);
      if (n === 0) break;
      got += n;
    }
    if (got < length) buf.fill(0, got);
    return buf;
  }

  async writeFully(data: Buffer, position: number): Promise<void> {
    let done = 0;
    while (done < data.length) done += await this.write(data, done, data.length - done, position + done);
  }

  writevFully(buffers: readonly Buffer[], position: number): Promise<void> {
    return writevFully((chunk, at) => this.writev(chunk, at), buffers, position);
  }
}

/** Buffers per writev call: Linux's IOV_MAX. */
const MAX_IOV = 1024;

/**
 * Writes every byte of `buffers` at `position` through `writev`, which may
 * write fewer bytes than asked (a short write): the rest is written by further
 * calls, at most IOV_MAX buffers each.
 */
export async function writevFully(
  writev: (buffers: readonly Buffer[], position: number) => Promise<number>,
  buffers: readonly Buffer[],
  position: number,
): Promise<void> {
  let at = position;
  for (let i = 0; i < buffers.length; i += MAX_IOV) {
    let pending = buffers.slice(i, i + MAX_IOV);
    let total = 0;
    for (const b of pending) total += b.length;
    for (;;) {
      const written = await writev(pending, at);
      at += written;
      if (written >= total) break;
      // A short write: carry on after the bytes that made it.
      total -= written;
      let skip = written;
      const rest: Buffer[] = [];
      for (const b of pending) {
        if (skip >= b.length) skip -= b.length;
        else {
          rest.push(skip > 0 ? b.subarray(skip) : b);
          skip = 0;
        }
      }
      pending = rest;
    }
  }
}
