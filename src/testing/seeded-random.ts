/**
 * A small seeded PRNG (mulberry32) for property tests: a failing seed replays
 * the same history.
 */
export class SeededRandom {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)] as T;
  }

  bytes(length: number): Buffer {
    const buf = Buffer.allocUnsafe(length);
    let i = 0;
    for (; i + 4 <= length; i += 4) buf.writeUInt32LE((this.next() * 4294967296) >>> 0, i);
    for (; i < length; i++) buf.writeUInt8((this.next() * 256) | 0, i);
    return buf;
  }
}
