import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeededRandom } from '../testing/seeded-random.ts';
import { Bitset } from './bitset.ts';

test('any() follows random sets and clears, and bits loaded from bytes', () => {
  for (const seed of [1, 2, 3]) {
    const rnd = new SeededRandom(seed);
    const count = rnd.int(1, 300);
    const bits = new Bitset(count);
    const model = new Array<boolean>(count).fill(false);
    for (let step = 0; step < 500; step++) {
      const from = rnd.int(0, count - 1);
      const to = Math.min(count, from + rnd.int(1, 40));
      const setting = rnd.int(0, 2) === 0;
      const before = model.slice(from, to).filter((b) => b === setting).length;
      const changed = setting ? bits.set(from, to) : bits.clear(from, to);
      model.fill(setting, from, to);
      assert.equal(changed, to - from - before);
      assert.equal(bits.any(), model.some(Boolean), `seed ${seed} step ${step}`);
      // A bitset made from the same bytes (as loaded from its file) agrees.
      assert.equal(new Bitset(count, Uint8Array.from(bits.bits)).any(), model.some(Boolean));
    }
  }
});
