import type { TLSSocket } from 'node:tls';
import { type Frame, FrameReader } from './wire-protocol.ts';

/** Idle time before TCP keepalive probes start: a silently dead peer is noticed while the sender waits for acks. */
const KEEPALIVE_IDLE_MS = 10_000;

/**
 * A replication socket as a stream of frames: `send` waits for the socket to
 * drain (backpressure), frames are handed to `onFrame` in arrival order, and
 * `closed` settles once, with the reason.
 */
export class FramedConnection {
  readonly socket: TLSSocket;
  readonly closed: Promise<Error | null>;
  onFrame: (frame: Frame) => void = () => {};
  #reader = new FrameReader();
  #closeReason: Error | null | undefined;
  #resolveClosed: (reason: Error | null) => void = () => {};
  #drainWaiters: (() => void)[] = [];

  constructor(socket: TLSSocket) {
    this.socket = socket;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
    socket.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = this.#reader.push(chunk);
      } catch (e) {
        this.close(e as Error);
        return;
      }
      for (const frame of frames) {
        if (this.#closeReason !== undefined) return;
        this.onFrame(frame);
      }
    });
    socket.on('drain', () => this.#wakeDrain());
    socket.on('error', (e) => this.close(e));
    socket.on('close', () => this.close(null));
  }

  get isClosed(): boolean {
    return this.#closeReason !== undefined;
  }

  /** Writes a frame; resolves when the socket can take more (not when the peer got it). */
  async send(parts: Buffer[]): Promise<void> {
    if (this.#closeReason !== undefined)
      throw this.#closeReason ?? new Error('replication connection closed');
    let ok = true;
    // One writev for the frame's parts (a record batch has two per record), not a TLS write each.
    this.socket.cork();
    for (const part of parts) ok = this.socket.write(part);
    this.socket.uncork();
    if (!ok) {
      await new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
      if (this.#closeReason !== undefined)
        throw this.#closeReason ?? new Error('replication connection closed');
    }
  }

  close(reason: Error | null = null): void {
    if (this.#closeReason !== undefined) return;
    this.#closeReason = reason;
    this.socket.destroy();
    this.#wakeDrain();
    this.#resolveClosed(reason);
  }

  #wakeDrain(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const w of waiters) w();
  }
}
