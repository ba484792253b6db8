import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FORMAT_1_RECORDS, FORMAT_1_SEGMENT } from '../testing/format-1-journal.ts';
import { type IndexedRecord, SegmentLog } from './segment-log.ts';

const root = await mkdtemp(join(tmpdir(), 'haven-segment-log-'));
after(() => rm(root, { recursive: true, force: true }));

const markers = (records: readonly IndexedRecord[]) => records.map((r) => r.marker ?? undefined);

test('a replica segment of format-1 records stays readable, also once format-2 records follow', async () => {
  await mkdir(join(root, 'log'));
  // Replica segments hold the records as the journal wrote them.
  await copyFile(FORMAT_1_SEGMENT, join(root, 'log', 'seg-0000000000000001.log'));
  const expected = FORMAT_1_RECORDS.map((r) => ('marker' in r ? r.marker : undefined));

  const opened = await SegmentLog.open(join(root, 'log'), 0, 1 << 20);
  assert.deepEqual(markers(opened.records), expected);
  const marker = { type: 'group', id: 'cut-new', groupPointId: 'cut-new' } as const;
  await opened.log.append([{ seq: 11, timeMs: 0, kind: 'marker', offset: 0, length: 0, marker }]);
  await opened.log.close();

  const reopened = await SegmentLog.open(join(root, 'log'), 0, 1 << 20);
  try {
    assert.deepEqual(markers(reopened.records), [...expected, marker]);
  } finally {
    await reopened.log.close();
  }
});
