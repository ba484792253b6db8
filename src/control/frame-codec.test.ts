import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from '../errors/index.ts';
import { encodeFrame, FrameDecoder } from './frame-codec.ts';

test('frames round-trip when the stream splits them anywhere', () => {
  const messages = [{ id: 1, method: 'host.ping', params: null }, { text: 'é'.repeat(300) }, []];
  const bytes = Buffer.concat(messages.map((m) => encodeFrame(m)));
  for (const step of [1, 3, 7, bytes.length]) {
    const decoder = new FrameDecoder();
    const out: unknown[] = [];
    for (let i = 0; i < bytes.length; i += step) out.push(...decoder.push(bytes.subarray(i, i + step)));
    assert.deepEqual(out, messages, `chunk size ${step}`);
  }
});

test('an oversize length is refused from its header alone', () => {
  const decoder = new FrameDecoder(1024);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(1025);
  assert.throws(
    () => decoder.push(header),
    (error: unknown) => error instanceof HavenError && error.code === 'limit_exceeded',
  );
  assert.throws(() => encodeFrame({ big: 'x'.repeat(2000) }, 1024), /exceeds the 1024-byte limit/);
});

test('a payload that is not JSON is refused', () => {
  const decoder = new FrameDecoder();
  const payload = Buffer.from('{not json');
  const header = Buffer.alloc(4);
  header.writeUInt32BE(payload.length);
  assert.throws(() => decoder.push(Buffer.concat([header, payload])), /not valid JSON/);
});
