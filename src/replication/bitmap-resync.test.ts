import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fakeLink, fakeSource } from '../testing/sender-link.fixture.ts';
import { planBitmapResync } from './bitmap-resync.ts';

const resync = { id: 3, regions: [{ offset: 4096, length: 4096 }], resumeSeq: 10 };

test('copies the dirty regions from the first unacknowledged record, then clears them', async () => {
  const source = fakeSource(Buffer.alloc(16384), { resync });
  source.journal.resyncRequired = true;
  const { link } = fakeLink(source.journal);
  link.window.resume(6);
  const start = await planBitmapResync(link, source);
  assert.equal(start.outcome, 'copy');
  if (start.outcome !== 'copy') return;
  assert.equal(start.plan.fromSeq, 7);
  assert.deepEqual(start.plan.regions, resync.regions);
  await start.plan.onCopied?.();
  assert.deepEqual(source.journal.events, ['trim 6', 'complete resync 3']);
});

test('nothing to copy once an earlier run cleared the bitmap', async () => {
  const source = fakeSource(Buffer.alloc(16384), { resync });
  const { link } = fakeLink(source.journal);
  assert.deepEqual(await planBitmapResync(link, source), { outcome: 'already-synced' });
});

test('falls back when the receiver is behind the oldest journaled record', async () => {
  const source = fakeSource(Buffer.alloc(16384), { resync });
  source.journal.resyncRequired = true;
  source.journal.status.firstSeq = 5;
  const { link } = fakeLink(source.journal);
  link.window.resume(2);
  assert.deepEqual(await planBitmapResync(link, source), { outcome: 'journal-trimmed' });
});
