import type { JournalRecord } from '../disk/journal-record.ts';

/** A segment written in format 1 ('HVJ1') by the journal and host disk service of that time. */
export const FORMAT_1_SEGMENT = new URL('./fixtures/hvj1-journal-0000000000000001.seg', import.meta.url);

/** Writes' bytes in the fixture: byte i is (7i + seed) mod 256. */
export function fixturePattern(length: number, seed: number): Buffer {
  return Buffer.from(Array.from({ length }, (_, i) => (i * 7 + seed) & 0xff));
}

/** What the fixture holds, read with today's meaning: markers of a group cut carry its id. */
export const FORMAT_1_RECORDS = [
  { seq: 1, kind: 'write', offset: 0, length: 4096, data: fixturePattern(4096, 1) },
  { seq: 2, kind: 'write', offset: 8192, length: 512, data: fixturePattern(512, 2) },
  { seq: 3, kind: 'trim', offset: 65536, length: 4096 },
  { seq: 4, kind: 'flush', offset: 0, length: 0 },
  {
    seq: 5,
    kind: 'marker',
    offset: 0,
    length: 0,
    marker: {
      type: 'app-consistent',
      id: 'gp-old',
      label: 'app-consistent group gp-old',
      groupPointId: 'gp-old',
    },
  },
  { seq: 6, kind: 'zero', offset: 131072, length: 8192 },
  {
    seq: 7,
    kind: 'marker',
    offset: 0,
    length: 0,
    marker: {
      type: 'group',
      id: 'cut-old',
      label: 'crash-consistent group cut-old',
      groupPointId: 'cut-old',
    },
  },
  {
    seq: 8,
    kind: 'marker',
    offset: 0,
    length: 0,
    marker: { type: 'app-consistent', id: 'solo-old', label: 'app-consistent' },
  },
  { seq: 9, kind: 'write', offset: 4096, length: 1024, data: fixturePattern(1024, 3) },
  { seq: 10, kind: 'flush', offset: 0, length: 0 },
] satisfies Omit<JournalRecord, 'timeMs'>[];

/** Records without their times, to compare with `FORMAT_1_RECORDS`. */
export function withoutTime<R extends { timeMs: number }>(records: readonly R[]): Omit<R, 'timeMs'>[] {
  return records.map(({ timeMs: _, ...r }) => r);
}
