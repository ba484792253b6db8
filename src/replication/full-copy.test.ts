import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planFullCopy } from './full-copy.ts';
import { fakeSource } from './sender-link.fixture.ts';

test('copies the whole disk as flushed, streaming from the next record journaled', async () => {
  const source = fakeSource(Buffer.alloc(4096));
  source.journal.status.nextSeq = 42;
  assert.deepEqual(await planFullCopy(source), { fromSeq: 42, regions: null });
  assert.equal(source.flushes, 1);
});
