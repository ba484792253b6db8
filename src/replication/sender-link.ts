import type { FramedConnection } from './framed-connection.ts';
import { type FrameAccounting, NO_RECORDS, type SendWindow } from './send-window.ts';
import type { SyncReport } from './sync-report.ts';
import type { TokenBucket } from './token-bucket.ts';

/** The sender stopped, paused or lost its connection: not a failure to report. */
export class LinkClosed extends Error {}

/** Bytes and batches one disk's sender put on the wire, over all its connections. */
export interface WireCounters {
  wireBytes: number;
  batchesCompressed: number;
  batchesUncompressed: number;
}

/**
 * One connection of a disk's sender as record streaming and the sync kinds
 * use it: frames go through the send window and the host's bandwidth limit,
 * and every wait fails with `LinkClosed` once the connection is gone or the
 * sender stopped.
 */
export class SenderLink {
  readonly conn: FramedConnection;
  readonly window: SendWindow;
  readonly #bucket: TokenBucket | null;
  readonly #counters: WireCounters;
  readonly #halted: () => boolean;
  readonly #lastError: () => string | null;

  constructor(options: {
    conn: FramedConnection;
    window: SendWindow;
    bucket: TokenBucket | null;
    counters: WireCounters;
    /** True once the sender stopped or paused. */
    halted: () => boolean;
    /** Why the connection closed, if known. */
    lastError: () => string | null;
  }) {
    this.conn = options.conn;
    this.window = options.window;
    this.#bucket = options.bucket;
    this.#counters = options.counters;
    this.#halted = options.halted;
    this.#lastError = options.lastError;
  }

  /** Throws `LinkClosed` once there is no point in going on. */
  check(): void {
    if (this.#halted()) throw new LinkClosed('replication stopped');
    if (this.conn.isClosed) throw new LinkClosed(this.#lastError() ?? 'replication connection closed');
  }

  /** Sends a frame the window counts: waits for window space and bandwidth first. */
  async send(parts: Buffer[], accounting: FrameAccounting = NO_RECORDS, sync: SyncReport | null = null) {
    const bytes = frameBytes(parts);
    await this.window.waitForRoom(bytes, () => this.check());
    await this.#write(parts, bytes, sync);
    this.window.add(bytes, accounting);
  }

  /**
   * Sends frames without accounting (sync data) in one write: one wait for the
   * socket to drain instead of one per frame, which bounds a copy of many small
   * regions.
   */
  async sendAll(frames: Buffer[][], sync: SyncReport | null = null): Promise<void> {
    const sizes = frames.map(frameBytes);
    const bytes = sizes.reduce((n, b) => n + b, 0);
    await this.window.waitForRoom(bytes, () => this.check());
    await this.#write(frames.flat(), bytes, sync);
    for (const b of sizes) this.window.add(b, NO_RECORDS);
  }

  /** Sends a frame the receiver does not acknowledge (a request it answers instead). */
  async sendUnacknowledged(parts: Buffer[], sync: SyncReport | null): Promise<void> {
    await this.#write(parts, frameBytes(parts), sync);
  }

  /** Waits until the receiver acknowledged everything sent on this connection. */
  drained(): Promise<void> {
    return this.window.drained(() => this.check());
  }

  async #write(parts: Buffer[], bytes: number, sync: SyncReport | null): Promise<void> {
    this.check();
    await this.#bucket?.take(bytes);
    this.check();
    await this.conn.send(parts);
    this.#counters.wireBytes += bytes;
    if (sync !== null) sync.wireBytes += bytes;
  }
}

function frameBytes(parts: Buffer[]): number {
  return parts.reduce((n, p) => n + p.length, 0);
}
