import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeededRandom } from '../testing/seeded-random.ts';
import { SECTOR_BYTES, type StatusRun, sectorAligned } from './sector-extents.ts';

test('block status at sector granularity: a sector holding any data is data, and nothing else changes', () => {
  const rnd = new SeededRandom(11);
  for (let round = 0; round < 500; round++) {
    // A byte model: each byte's flags (0 data, 1 hole, 3 hole reading as zeroes, 2 zeroes).
    const offset = rnd.int(0, 3) * SECTOR_BYTES + (rnd.int(0, 1) === 0 ? 0 : rnd.int(1, SECTOR_BYTES - 1));
    const runs: StatusRun[] = [];
    let at = offset;
    for (let i = rnd.int(1, 12); i > 0; i--) {
      const length = rnd.int(0, 1) === 0 ? rnd.int(1, 700) : rnd.int(1, 4) * SECTOR_BYTES;
      runs.push({ start: at, end: at + length, flags: [0, 1, 2, 3][rnd.int(0, 3)] as number });
      at += length;
    }
    const end = at;
    const flagsAt = (byte: number) => (runs.find((r) => r.start <= byte && byte < r.end) as StatusRun).flags;
    const aligned = sectorAligned(runs);

    assert.equal(aligned[0]?.start, offset, 'the reply starts at the request');
    assert.equal(aligned.at(-1)?.end, end, 'and ends where the runs did');
    for (const [i, r] of aligned.entries()) {
      assert.ok(r.end > r.start);
      if (i > 0) assert.equal(r.start, aligned[i - 1]?.end, 'contiguous');
      if (i > 0) assert.notEqual(r.flags, aligned[i - 1]?.flags, 'merged where equal');
      if (i < aligned.length - 1) assert.equal(r.end % SECTOR_BYTES, 0, `boundary ${r.end} on a sector`);
    }
    // Each reported sector's flags are the AND over its bytes: never a hole or zeroes where a byte is data.
    for (const r of aligned) {
      for (let s = r.start; s < r.end; s = Math.min(r.end, s - (s % SECTOR_BYTES) + SECTOR_BYTES)) {
        const sectorEnd = Math.min(end, s - (s % SECTOR_BYTES) + SECTOR_BYTES);
        let and = 3;
        for (let b = Math.max(offset, s - (s % SECTOR_BYTES)); b < sectorEnd; b++) and &= flagsAt(b);
        assert.equal(r.flags, and, `flags of the sector at ${s - (s % SECTOR_BYTES)}`);
      }
    }
  }
});
