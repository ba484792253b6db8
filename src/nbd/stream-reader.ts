import type { Duplex } from 'node:stream';
import { HavenError } from '../errors/index.ts';

/** The peer closed the stream before sending what the protocol requires. */
export class StreamEndedError extends HavenError {
  constructor(wanted: number, had: number) {
    super(
      'unreachable',
      `NBD peer closed the connection while ${wanted} bytes were expected (${had} buffered)`,
      {
        wanted,
        had,
      },
    );
  }
}

/**
 * Exact-length reads from a byte stream. Buffers at most `highWaterMark`
 * bytes (or the size of the read being waited for, whichever is larger)
 * and pauses the stream beyond that, so a peer that sends faster than we
 * consume is held back by TCP rather than by our memory.
 */
export class StreamReader {
  readonly #stream: Duplex;
  readonly #highWaterMark: number;
  #chunks: Buffer[] = [];
  #head = 0;
  #buffered = 0;
  #want = 0;
  #resolve: ((b: Buffer) => void) | null = null;
  #reject: ((e: Error) => void) | null = null;
  #ended = false;
  #failure: Error | null = null;
  #paused = false;
  /** A read larger than the buffer fills this as data arrives, so its chunks are not held twice. */
  #target: Buffer | null = null;
  #filled = 0;
  /** Where the read being waited for copies its bytes. */
  #alloc: ((n: number) => Buffer) | undefined = undefined;

  constructor(stream: Duplex, highWaterMark = 256 * 1024) {
    this.#stream = stream;
    this.#highWaterMark = highWaterMark;
    stream.on('data', this.#onData);
    stream.on('end', this.#onEnd);
    stream.on('close', this.#onEnd);
    stream.on('error', this.#onError);
  }

  /** Bytes received but not yet consumed. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Stops listening (e.g. before a TLS upgrade) and hands back unread bytes. */
  detach(): Buffer {
    this.#stream.off('data', this.#onData);
    this.#stream.off('end', this.#onEnd);
    this.#stream.off('close', this.#onEnd);
    this.#stream.off('error', this.#onError);
    const rest = this.#buffered > 0 ? this.#take(this.#buffered) : Buffer.alloc(0);
    this.#fail(new HavenError('internal', 'NBD stream reader was detached from its stream'));
    return rest;
  }

  /** Ends any waiting read with `err` and every later one too. */
  cancel(err: Error): void {
    this.#fail(err);
  }

  /**
   * Returns `n` bytes at once if they are already buffered. The bytes are a
   * view of what the stream delivered when they arrived in one piece, else a
   * copy into `alloc(n)` (default: a new buffer).
   */
  tryRead(n: number, alloc?: (n: number) => Buffer): Buffer | undefined {
    if (this.#buffered < n || this.#resolve) return undefined;
    const out = this.#take(n, alloc);
    this.#maybeResume();
    return out;
  }

  /** Resolves with the next `n` bytes (a view or a copy into `alloc(n)`, as for `tryRead`). */
  read(n: number, alloc?: (n: number) => Buffer): Promise<Buffer> {
    if (this.#resolve)
      return Promise.reject(new HavenError('internal', 'NBD stream reader: concurrent reads'));
    if (this.#buffered >= n) {
      const out = this.#take(n, alloc);
      this.#maybeResume();
      return Promise.resolve(out);
    }
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#ended) return Promise.reject(new StreamEndedError(n, this.#buffered));
    return new Promise<Buffer>((resolve, reject) => {
      this.#want = n;
      this.#resolve = resolve;
      this.#reject = reject;
      if (n > this.#highWaterMark) {
        this.#target = alloc?.(n) ?? Buffer.allocUnsafe(n);
        this.#filled = this.#buffered;
        if (this.#buffered > 0) this.#copyOut(this.#target, this.#buffered);
        this.#buffered = 0;
      } else {
        this.#alloc = alloc;
      }
      this.#maybeResume();
    });
  }

  /** Consumes and drops `n` bytes without holding more than one chunk at a time. */
  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      const step = Math.min(left, this.#highWaterMark);
      await this.read(step);
      left -= step;
    }
  }

  #onData = (chunk: Buffer): void => {
    const target = this.#target;
    if (target !== null) {
      const step = Math.min(chunk.length, target.length - this.#filled);
      chunk.copy(target, this.#filled, 0, step);
      this.#filled += step;
      if (this.#filled < target.length) return;
      this.#target = null;
      const resolve = this.#resolve;
      this.#resolve = null;
      this.#reject = null;
      resolve?.(target);
      if (step === chunk.length) return;
      chunk = chunk.subarray(step);
    }
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    if (this.#resolve && this.#buffered >= this.#want) {
      const resolve = this.#resolve;
      this.#resolve = null;
      this.#reject = null;
      const alloc = this.#alloc;
      this.#alloc = undefined;
      resolve(this.#take(this.#want, alloc));
    }
    if (!this.#paused && this.#buffered >= Math.max(this.#highWaterMark, this.#want)) {
      this.#paused = true;
      this.#stream.pause();
    }
  };

  #onEnd = (): void => {
    this.#ended = true;
    if (this.#reject) this.#fail(new StreamEndedError(this.#want, this.#buffered));
  };

  #onError = (err: Error): void => {
    this.#fail(err);
  };

  #fail(err: Error): void {
    if (!this.#failure) this.#failure = err;
    const reject = this.#reject;
    this.#resolve = null;
    this.#reject = null;
    this.#target = null;
    this.#alloc = undefined;
    reject?.(err);
  }

  #maybeResume(): void {
    if (this.#paused && this.#buffered < Math.max(this.#highWaterMark, this.#resolve ? this.#want : 0)) {
      this.#paused = false;
      this.#stream.resume();
    }
  }

  #take(n: number, alloc?: (n: number) => Buffer): Buffer {
    this.#buffered -= n;
    const first = this.#chunks[0];
    if (first && first.length - this.#head >= n) {
      const out = first.subarray(this.#head, this.#head + n);
      this.#head += n;
      if (this.#head === first.length) {
        this.#chunks.shift();
        this.#head = 0;
      }
      return out;
    }
    return this.#copyOut(alloc?.(n) ?? Buffer.allocUnsafe(n), n);
  }

  /** Moves the next `n` buffered bytes into the start of `out`. */
  #copyOut(out: Buffer, n: number): Buffer {
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[0]!;
      const avail = chunk.length - this.#head;
      const step = Math.min(avail, n - filled);
      chunk.copy(out, filled, this.#head, this.#head + step);
      filled += step;
      this.#head += step;
      if (this.#head === chunk.length) {
        this.#chunks.shift();
        this.#head = 0;
      }
    }
    return out;
  }
}
