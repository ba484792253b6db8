/**
 * Which value covers each byte of a disk: sorted, non-overlapping half-open
 * extents; bytes outside every extent belong to the layer below. A point-in-time
 * view is built by setting each record's range in sequence order, so
 * later records hide earlier ones. Values are never split or adjusted: a piece
 * of an extent finds its bytes from its own position (e.g. `pos - record.offset`).
 */
export interface Extent<T> {
  start: number;
  end: number;
  value: T;
}

export class ExtentMap<T> {
  readonly #starts: number[] = [];
  readonly #ends: number[] = [];
  readonly #values: T[] = [];

  get count(): number {
    return this.#starts.length;
  }

  /** Covers [start, end) with `value`, hiding whatever was there. */
  set(start: number, end: number, value: T): void {
    if (end <= start) return;
    const i = this.#firstEndingAfter(start);
    let j = i;
    while (j < this.#starts.length && (this.#starts[j] as number) < end) j++;
    const starts: number[] = [];
    const ends: number[] = [];
    const values: T[] = [];
    if (j > i && (this.#starts[i] as number) < start) {
      starts.push(this.#starts[i] as number);
      ends.push(start);
      values.push(this.#values[i] as T);
    }
    starts.push(start);
    ends.push(end);
    values.push(value);
    if (j > i && (this.#ends[j - 1] as number) > end) {
      starts.push(end);
      ends.push(this.#ends[j - 1] as number);
      values.push(this.#values[j - 1] as T);
    }
    this.#starts.splice(i, j - i, ...starts);
    this.#ends.splice(i, j - i, ...ends);
    this.#values.splice(i, j - i, ...values);
  }

  /**
   * Walks [start, end) in order: extents clipped to the range, and the gaps
   * between them with `value` null (the layer below).
   */
  *walk(start: number, end: number): Generator<{ start: number; end: number; value: T | null }> {
    let pos = start;
    for (let i = this.#firstEndingAfter(start); i < this.#starts.length && pos < end; i++) {
      const s = this.#starts[i] as number;
      if (s >= end) break;
      if (s > pos) {
        yield { start: pos, end: s, value: null };
        pos = s;
      }
      const e = Math.min(end, this.#ends[i] as number);
      yield { start: pos, end: e, value: this.#values[i] as T };
      pos = e;
    }
    if (pos < end) yield { start: pos, end, value: null };
  }

  /** Index of the first extent whose end is after `pos`. */
  #firstEndingAfter(pos: number): number {
    let lo = 0;
    let hi = this.#ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#ends[mid] as number) <= pos) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
