/**
 * Test-only: seeded random journal histories and the model disk they are
 * checked against (a plain buffer with every record applied in order).
 * Not exported from index.ts.
 */
import type { JournalRecord } from '../disk/index.ts';
import { SeededRandom } from './seeded-random.ts';

export interface HistoryOptions {
  size: number;
  count: number;
  firstSeq?: number;
  startTimeMs?: number;
  /** Source time between records. */
  stepMs?: number;
  maxWrite?: number;
}

/** Writes, trims, zeroes (512-aligned or not), flushes and markers at random offsets and sizes. */
export function randomHistory(seed: number, options: HistoryOptions): JournalRecord[] {
  const rnd = new SeededRandom(seed);
  const { size, count } = options;
  const maxWrite = options.maxWrite ?? 128 << 10;
  // Data is cut from a random pool at random places: distinct enough, and cheap to make.
  const pool = rnd.bytes(maxWrite * 4);
  const out: JournalRecord[] = [];
  let seq = options.firstSeq ?? 1;
  let time = options.startTimeMs ?? 1_700_000_000_000;
  for (let i = 0; i < count; i++, seq++, time += options.stepMs ?? 1000) {
    const roll = rnd.next();
    const aligned = rnd.next() < 0.8;
    const length = aligned ? rnd.int(1, maxWrite / 512) * 512 : rnd.int(1, maxWrite);
    const offset = aligned ? rnd.int(0, (size - length) / 512) * 512 : rnd.int(0, size - length);
    const base = { seq, timeMs: time, offset: 0, length: 0 };
    if (roll < 0.15) out.push({ ...base, kind: 'flush' });
    else if (roll < 0.18) {
      const group = rnd.next() < 0.5;
      out.push({
        ...base,
        kind: 'marker',
        marker: group
          ? { type: 'group', id: `g-${seq}`, groupPointId: `g-${seq}` }
          : { type: 'app-consistent', id: `a-${seq}`, label: 'fsfreeze' },
      });
    } else if (roll < 0.24)
      out.push({ ...base, kind: 'trim', offset, length: Math.min(length * 4, size - offset) });
    else if (roll < 0.28) out.push({ ...base, kind: 'zero', offset, length });
    else {
      const from = rnd.int(0, pool.length - length);
      out.push({
        ...base,
        kind: 'write',
        offset,
        length,
        data: Buffer.from(pool.subarray(from, from + length)),
      });
    }
  }
  return out;
}

export class ModelDisk {
  readonly bytes: Buffer;

  constructor(size: number, initial?: Buffer) {
    this.bytes = initial === undefined ? Buffer.alloc(size) : Buffer.from(initial);
  }

  apply(r: JournalRecord): void {
    if (r.kind === 'write' && r.data !== undefined) r.data.copy(this.bytes, r.offset);
    else if (r.kind === 'trim' || r.kind === 'zero') this.bytes.fill(0, r.offset, r.offset + r.length);
  }

  copy(): Buffer {
    return Buffer.from(this.bytes);
  }
}

/** The model disk after every record of `history` through `seq`. */
export function modelAt(
  size: number,
  history: readonly JournalRecord[],
  seq: number,
  initial?: Buffer,
): Buffer {
  const model = new ModelDisk(size, initial);
  for (const r of history) {
    if (r.seq > seq) break;
    model.apply(r);
  }
  return model.bytes;
}

/** The crash test's disk, history and retention (shared by the test and its child process). */
export const CRASH_DISK = { key: 'vm-crash/disk-0', size: 4 << 20 };
export const CRASH_RETENTION = {
  fineWindowMs: 20_000,
  retentionMs: 60_000,
  thinIntervalMs: 10_000,
  appConsistentIntervalMs: 10_000,
};

export function crashHistory(seed: number): JournalRecord[] {
  return randomHistory(seed, { size: CRASH_DISK.size, count: 2500, stepMs: 1000, maxWrite: 16 << 10 });
}
