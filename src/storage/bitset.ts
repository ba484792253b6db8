/** An in-memory bit array over fixed-size regions of a byte range. */
export class Bitset {
  readonly bits: Uint8Array;
  readonly count: number;
  /**
   * Bits set, kept by `set` and `clear`: `any()` is asked on every journal
   * status read, and scanning a large disk's bitmap each time showed in profiles.
   */
  #setBits: number;

  constructor(count: number, bytes?: Uint8Array) {
    this.count = count;
    this.bits = bytes ?? new Uint8Array(Math.ceil(count / 8));
    let set = 0;
    for (const byte of this.bits) {
      for (let b = byte; b !== 0; b &= b - 1) set++;
    }
    this.#setBits = set;
  }

  get(i: number): boolean {
    return ((this.bits[i >> 3] ?? 0) & (1 << (i & 7))) !== 0;
  }

  /** Sets bits [from, to); returns how many were clear before. */
  set(from: number, to: number): number {
    let changed = 0;
    for (let i = from; i < to; i++) {
      const byte = i >> 3;
      const mask = 1 << (i & 7);
      const old = this.bits[byte] ?? 0;
      if ((old & mask) === 0) {
        this.bits[byte] = old | mask;
        changed++;
      }
    }
    this.#setBits += changed;
    return changed;
  }

  /** Clears bits [from, to); returns how many were set before. */
  clear(from: number, to: number): number {
    let changed = 0;
    for (let i = from; i < to; i++) {
      const byte = i >> 3;
      const mask = 1 << (i & 7);
      const old = this.bits[byte] ?? 0;
      if ((old & mask) !== 0) {
        this.bits[byte] = old & ~mask;
        changed++;
      }
    }
    this.#setBits -= changed;
    return changed;
  }

  /** Runs of equal bits from `from` (inclusive) to `to` (exclusive). */
  *runs(from = 0, to = this.count): Generator<{ start: number; end: number; set: boolean }> {
    let start = from;
    while (start < to) {
      const set = this.get(start);
      let end = start + 1;
      while (end < to && this.get(end) === set) end++;
      yield { start, end, set };
      start = end;
    }
  }

  any(): boolean {
    return this.#setBits > 0;
  }
}
