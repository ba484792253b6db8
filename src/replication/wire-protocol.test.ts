import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeFrame, FrameReader, FrameType, jsonFrame } from './wire-protocol.ts';

test('frames are a u32 length of type and payload, then the type byte, then the payload', () => {
  const hex = (parts: Buffer[]) => Buffer.concat(parts).toString('hex');
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
