import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from '../errors/index.ts';
import { encodeLengthPrefix, LengthPrefixedDecoder } from './length-prefixed-codec.ts';

const limit = { label: 'test', maxBodyBytes: 1024 };

function frame(body: Buffer): Buffer {
  return Buffer.concat([encodeLengthPrefix(body.length, limit), body]);
}

test('bodies round-trip when the stream splits them anywhere', () => {
  const bodies = [Buffer.from('first'), Buffer.alloc(0), Buffer.alloc(700, 7)];
  const bytes = Buffer.concat(bodies.map(frame));
  for (const step of [1, 3, 7, bytes.length]) {
    const decoder = new LengthPrefixedDecoder(limit);
    const out: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += step) out.push(...decoder.push(bytes.subarray(i, i + step)));
    assert.deepEqual(out, bodies, `chunk size ${step}`);
    assert.equal(decoder.buffered, 0);
  }
});

test('the prefix is a u32 big-endian body length, with spare bytes after it', () => {
  assert.deepEqual(
    encodeLengthPrefix(0x010203, { ...limit, maxBodyBytes: 1 << 24 }),
    Buffer.from([0, 1, 2, 3]),
  );
  const head = encodeLengthPrefix(5, limit, 2);
  assert.equal(head.length, 6);
  assert.equal(head.readUInt32BE(0), 5);
});

test('an oversize length is refused from its header alone, and when encoding', () => {
  const decoder = new LengthPrefixedDecoder(limit);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(1025);
  assert.throws(
    () => decoder.push(header),
    (error: unknown) =>
      error instanceof HavenError &&
      error.code === 'limit_exceeded' &&
      error.message === 'test frame of 1025 bytes exceeds the 1024-byte limit',
  );
  assert.throws(
    () => encodeLengthPrefix(2000, limit),
    /test frame of 2000 bytes exceeds the 1024-byte limit/,
  );
});

test('a raised limit applies to the frames that follow', () => {
  const decoder = new LengthPrefixedDecoder(limit);
  decoder.maxBodyBytes = 4096;
  const body = Buffer.alloc(2000);
  const bytes = Buffer.concat([encodeLengthPrefix(body.length, { ...limit, maxBodyBytes: 4096 }), body]);
  assert.deepEqual(decoder.push(bytes), [body]);
});

test('a length below the minimum is refused with the chosen error', () => {
  const decoder = new LengthPrefixedDecoder({
    ...limit,
    minBodyBytes: 1,
    outOfRange: (length) => new HavenError('bad_request', `length ${length} is out of range`),
  });
  assert.throws(() => decoder.push(Buffer.alloc(4)), /length 0 is out of range/);
});
