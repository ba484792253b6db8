/**
 * Reusable buffers for WRITE payloads that arrive split across socket reads
 * and are copied into one buffer, and for READ replies (the backend reads
 * into one, handed back once the reply is sent).
 *
 * Every new Buffer of that size is off-heap memory that V8 counts; at a few
 * hundred MB/s of writes the count started a full mark-compact every 20-80 ms
 * (15-23% of the disk server's main thread, and the concurrent marker took
 * the second core). A buffer handed back once its request is answered is
 * taken again by a later payload of the same size, so the copy allocates
 * nothing. Bounded: at most `maxIdleBytes` of buffers wait here unused;
 * buffers in use are payloads the server's memory budget already counts.
 */

/** Below this, Buffer.allocUnsafe takes slices of Node's shared slab: nothing to gain. */
const MIN_POOLED_BYTES = 4096;

export class PayloadPool {
  readonly maxIdleBytes: number;
  readonly maxBufferBytes: number;
  /** Idle buffers by exact size (NBD clients use a few request sizes). */
  readonly #idle = new Map<number, ArrayBuffer[]>();
  #idleBytes = 0;

  constructor(options: { maxIdleBytes?: number; maxBufferBytes?: number } = {}) {
    this.maxIdleBytes = options.maxIdleBytes ?? 16 * 1024 * 1024;
    this.maxBufferBytes = options.maxBufferBytes ?? 4 * 1024 * 1024;
  }

  /** Bytes of buffers waiting to be taken again. */
  get idleBytes(): number {
    return this.#idleBytes;
  }

  /** Whether `take(n)` gives a buffer that `give` may take back. */
  pools(n: number): boolean {
    return n >= MIN_POOLED_BYTES && n <= this.maxBufferBytes;
  }

  /** A buffer of `n` bytes with unspecified contents. */
  take(n: number): Buffer {
    if (!this.pools(n)) return Buffer.allocUnsafe(n);
    const list = this.#idle.get(n);
    const reused = list?.pop();
    if (reused === undefined) return Buffer.from(new ArrayBuffer(n));
    this.#idleBytes -= n;
    if (list?.length === 0) this.#idle.delete(n);
    return Buffer.from(reused);
  }

  /**
   * Hands back a buffer from `take`, once nothing uses it any more (its
   * request was answered); it is dropped when the pool holds enough.
   */
  give(buf: Buffer): void {
    const n = buf.length;
    if (!this.pools(n) || buf.byteOffset !== 0 || buf.buffer.byteLength !== n) return;
    if (this.#idleBytes + n > this.maxIdleBytes) return;
    const list = this.#idle.get(n);
    if (list === undefined) this.#idle.set(n, [buf.buffer as ArrayBuffer]);
    else list.push(buf.buffer as ArrayBuffer);
    this.#idleBytes += n;
  }
}
