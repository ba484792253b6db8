import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JournalRecord } from '../disk/index.ts';
import {
  CompressionProbe,
  decodeRecords,
  encodeFrame,
  encodeRecordParts,
  encodeRecords,
  FrameReader,
  FrameType,
  hashesPayload,
  jsonFrame,
  parseHashesPayload,
  parseSyncDataPayload,
  recordsPayload,
  syncDataPayload,
} from './wire-protocol.ts';

const hex = (parts: Buffer[]) => Buffer.concat(parts).toString('hex');

test('frames are a u32 length of type and payload, then the type byte, then the payload', () => {
  assert.equal(
    hex(encodeFrame(FrameType.RECORDS, [Buffer.from([1, 2]), Buffer.from([3])])),
    '0000000403010203',
  );
  assert.equal(
    hex(jsonFrame(FrameType.ACK, { frames: 2, durableSeq: 7 })),
    '0000001c047b226672616d6573223a322c2264757261626c65536571223a377d',
  );
});

test('frames round-trip through the reader, split anywhere', () => {
  const bytes = Buffer.concat([
    ...encodeFrame(FrameType.SYNC_DATA, Buffer.from('xy')),
    ...encodeFrame(FrameType.HASHES, Buffer.alloc(0)),
  ]);
  for (const step of [1, 2, bytes.length]) {
    const reader = new FrameReader();
    const frames = [];
    for (let i = 0; i < bytes.length; i += step) frames.push(...reader.push(bytes.subarray(i, i + step)));
    assert.deepEqual(frames, [
      { type: FrameType.SYNC_DATA, payload: Buffer.from('xy') },
      { type: FrameType.HASHES, payload: Buffer.alloc(0) },
    ]);
  }
});

test('a frame without a type byte is refused', () => {
  assert.throws(() => new FrameReader().push(Buffer.alloc(5)), /replication frame length 0 is out of range/);
});

test('record batches keep their byte layout and round-trip', async () => {
  const records: JournalRecord[] = [
    { seq: 5, timeMs: 1000, offset: 4096, length: 4, kind: 'write', data: Buffer.from([9, 8, 7, 6]) },
    { seq: 6, timeMs: 1001, offset: 0, length: 512, kind: 'trim' },
  ];
  const raw = encodeRecords(records);
  assert.equal(
    raw.toString('hex'),
    '000000000000000500000000000003e8000000000000100000000000000000040000000004090807060000000000000006' +
      '00000000000003e9000000000000000000000000000002000100000000',
  );
  assert.deepEqual(decodeRecords(raw), records);
  assert.equal(hex((await recordsPayload(raw, null)).payload), `000000004e${raw.toString('hex')}`);
  const packed = await recordsPayload(Buffer.alloc(4096), 1);
  assert.equal(packed.compressed, true);
  assert.equal(packed.payload[0]?.toString('hex'), '0100001000');
});

test('records carry their journaled checksums to a receiver that asked for them, markers never', () => {
  const records: JournalRecord[] = [
    {
      seq: 5,
      timeMs: 1000,
      offset: 4096,
      length: 4,
      kind: 'write',
      data: Buffer.from([9, 8, 7, 6]),
      crc: 0xdeadbeef,
    },
    {
      seq: 6,
      timeMs: 1001,
      offset: 0,
      length: 0,
      kind: 'marker',
      marker: { type: 'group', id: 'g', groupPointId: 'g' },
      crc: 7,
    },
    { seq: 7, timeMs: 1002, offset: 0, length: 0, kind: 'flush' },
  ];
  const withChecksums = Buffer.concat(encodeRecordParts(records, true));
  assert.equal(withChecksums.subarray(32, 41).toString('hex'), '8000000004deadbeef');
  const { crc: _marker, ...marker } = records[1] as JournalRecord;
  assert.deepEqual(decodeRecords(withChecksums), [records[0], marker, records[2]]);
  assert.deepEqual(Buffer.concat(encodeRecordParts(records)), encodeRecords(records));
  assert.equal(decodeRecords(encodeRecords(records))[0]?.crc, undefined);
});

test('sync data and hash replies keep their byte layout', async () => {
  const zero = await syncDataPayload(65536, null, 4096, 1);
  assert.equal(hex(zero.payload), '02000000000001000000001000');
  assert.deepEqual(await parseSyncDataPayload(Buffer.concat(zero.payload)), {
    offset: 65536,
    data: null,
    length: 4096,
  });
  const small = await syncDataPayload(65536, Buffer.from('abc'), 3, 1);
  assert.equal(hex(small.payload), '00000000000001000000000003616263');
  const digest = Buffer.alloc(32, 1);
  assert.equal(hex(hashesPayload(7, [digest])), `00000007${digest.toString('hex')}`);
  assert.deepEqual(parseHashesPayload(Buffer.concat(hashesPayload(7, [digest]))), {
    reqId: 7,
    digests: [digest],
  });
});

test('after data that does not compress, the next try comes after about 8 MiB, whatever the block size', () => {
  const tries = (blockBytes: number | undefined, blocks: number) => {
    const probe = new CompressionProbe(1);
    const tried: number[] = [];
    for (let i = 0; i < blocks; i++) {
      const level = blockBytes === undefined ? probe.next() : probe.next(blockBytes);
      if (level !== null) tried.push(i);
      probe.record(level !== null, false);
    }
    return tried;
  };
  // Record batches (no size): every 8th, as always.
  assert.deepEqual(tries(undefined, 17), [0, 8, 16]);
  assert.deepEqual(tries(1 << 20, 17), [0, 8, 16]);
  // A resync of scattered 64 KiB blocks tries every 128th, not every 8th.
  assert.deepEqual(tries(64 << 10, 300), [0, 128, 256]);
});
