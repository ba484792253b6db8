import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  FORMAT_1_RECORDS,
  FORMAT_1_SEGMENT,
  fixturePattern,
  withoutTime,
} from '../testing/format-1-journal.ts';
import { listJournalRecords } from './journal-reader.ts';
import { decodeMarker, encodeMarker, encodeRecord, type JournalRecord } from './journal-record.ts';
import { WriteJournal } from './write-journal.ts';

const root = await mkdtemp(join(tmpdir(), 'haven-journal-record-'));
after(() => rm(root, { recursive: true, force: true }));

async function format1Journal(name: string): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir);
  await copyFile(FORMAT_1_SEGMENT, join(dir, 'journal-0000000000000001.seg'));
  return dir;
}

async function list(dir: string): Promise<JournalRecord[]> {
  const out: JournalRecord[] = [];
  for await (const r of listJournalRecords(dir)) out.push(r);
  return out;
}

describe('journal record formats', () => {
  it('reads a format-1 segment: its group cut markers get their groupPointId', async () => {
    assert.deepEqual(withoutTime(await list(await format1Journal('read'))), FORMAT_1_RECORDS);
  });

  it('appends format-2 records after format-1 ones in the same journal, and reads both after reopening', async () => {
    const dir = await format1Journal('append');
    const options = { diskSize: 1 << 20, capacityBytes: 1 << 20 };
    const journal = await WriteJournal.open(dir, options);
    await journal.recordWrite(0, fixturePattern(512, 4));
    await journal.addMarker({
      type: 'app-consistent',
      id: 'gp-new',
      label: 'nightly',
      groupPointId: 'gp-new',
    });
    await journal.close();
    // Reopening scans the segment for a torn tail: records of both formats must be recognised.
    await (await WriteJournal.open(dir, options)).close();
    const records = withoutTime(await list(dir));
    assert.deepEqual(records.slice(0, FORMAT_1_RECORDS.length), FORMAT_1_RECORDS);
    assert.deepEqual(records.slice(FORMAT_1_RECORDS.length), [
      { seq: 11, kind: 'write', offset: 0, length: 512, data: fixturePattern(512, 4) },
      {
        seq: 12,
        kind: 'marker',
        offset: 0,
        length: 0,
        marker: { type: 'app-consistent', id: 'gp-new', label: 'nightly', groupPointId: 'gp-new' },
      },
    ]);
  });

  it('a reader that carries checksums gets format-2 ones unchecked, which encoding checks again; format 1 is checked as read', async () => {
    const dir = await format1Journal('carry');
    const journal = await WriteJournal.open(dir, { diskSize: 1 << 20, capacityBytes: 1 << 20 });
    try {
      await journal.recordWrite(0, fixturePattern(512, 5));
      const carried: JournalRecord[] = [];
      for await (const r of journal.records(1, { checksums: 'carry' })) carried.push(r);
      assert.deepEqual(
        carried.map((r) => r.crc === undefined),
        [...FORMAT_1_RECORDS.map(() => true), false],
      );
      const last = carried.at(-1) as JournalRecord;
      assert.equal((encodeRecord(last)[0] as Buffer).readUInt32LE(44), last.crc);
      const damaged = Buffer.from(last.data as Buffer);
      damaged[100] = (damaged[100] as number) ^ 1;
      assert.throws(() => encodeRecord({ ...last, data: damaged }), /damaged after it was written/);
      for await (const r of journal.records(1)) assert.equal(r.crc, undefined);
    } finally {
      await journal.close();
    }
  });

  it('takes group membership from a label only in format 1', () => {
    const payload = encodeMarker({ type: 'app-consistent', id: 'x', label: 'app-consistent group x' });
    assert.equal(decodeMarker(payload, 1).groupPointId, 'x');
    assert.equal(decodeMarker(payload, 2).groupPointId, undefined);
  });
});
