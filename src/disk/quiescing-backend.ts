import type { WriteOptions } from '../nbd/block-backend.ts';
import { ForwardingBackend } from './forwarding-backend.ts';

/**
 * Passes every call through to a backend, but can hold new changes (writes,
 * trims, write-zeroes) while the ones already running finish: the disk service
 * uses it to put a marker into several journals at one instant, with no write
 * of any of those disks before the marker on one disk and after it on another.
 * Held changes resume in arrival order, so journal order stays request order.
 */
export class QuiescingBackend extends ForwardingBackend {
  /** Time of the last acknowledged change (ms since the epoch), null before the first. */
  lastChangeMs: number | null = null;
  #running = 0;
  #drained: (() => void) | null = null;
  #gate: Promise<void> | null = null;
  /** Serialises quiesce() callers. */
  #turn: Promise<void> = Promise.resolve();

  override write(offset: number, data: Buffer, options: WriteOptions): Promise<void> {
    return this.#change(() => this.inner.write(offset, data, options));
  }

  override trim(offset: number, length: number, options: WriteOptions): Promise<void> {
    return this.#change(() => this.inner.trim(offset, length, options));
  }

  override writeZeroes(
    offset: number,
    length: number,
    options: WriteOptions & { mayTrim: boolean },
  ): Promise<void> {
    return this.#change(() => this.inner.writeZeroes(offset, length, options));
  }

  /**
   * Holds new changes and resolves, once the running ones are done, with the
   * function that lets them go again.
   */
  async quiesce(): Promise<() => void> {
    const previous = this.#turn;
    let release = (): void => {};
    this.#turn = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    let open = (): void => {};
    this.#gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    if (this.#running > 0) {
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
      });
    }
    return () => {
      this.#gate = null;
      open();
      release();
    };
  }

  async #change(call: () => Promise<void>): Promise<void> {
    // The common path calls straight through, in the same tick as the request arrived.
    while (this.#gate !== null) await this.#gate;
    this.#running++;
    try {
      await call();
      this.lastChangeMs = Date.now();
    } finally {
      this.#running--;
      if (this.#running === 0 && this.#drained !== null) {
        const drained = this.#drained;
        this.#drained = null;
        drained();
      }
    }
  }
}
