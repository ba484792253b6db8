import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fakeSource } from '../testing/sender-link.fixture.ts';
import { planFullCopy } from './full-copy.ts';

test('copies the whole disk as flushed, streaming from the next record journaled', async () => {
  const source = fakeSource(Buffer.alloc(4096));
  source.journal.status.nextSeq = 42;
  assert.deepEqual(await planFullCopy(source), { fromSeq: 42, regions: null });
  assert.equal(source.flushes, 1);
});
