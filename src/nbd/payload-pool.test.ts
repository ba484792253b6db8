import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import { scratchDir } from '../testing/nbd-test-fixture.ts';
import type { WriteOptions } from './block-backend.ts';
import { MemoryBackend } from './memory-backend.ts';
import { NbdClient } from './nbd-client.ts';
import { NbdServer } from './nbd-server.ts';
import { PayloadPool } from './payload-pool.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

test('a buffer handed back is taken again by a payload of its size; small, large and foreign ones are not kept', () => {
  const pool = new PayloadPool({ maxIdleBytes: 192 * KiB, maxBufferBytes: MiB });
  const a = pool.take(64 * KiB);
  assert.equal(a.length, 64 * KiB);
  pool.give(a);
  assert.equal(pool.idleBytes, 64 * KiB);
  const b = pool.take(64 * KiB);
  assert.equal(b.buffer, a.buffer);
  assert.equal(pool.idleBytes, 0);
  assert.notEqual(pool.take(64 * KiB).buffer, a.buffer, 'a buffer in use is not handed out twice');

  pool.give(pool.take(512)); // Node's slab serves these
  pool.give(pool.take(2 * MiB)); // larger than the pooled sizes
  pool.give(Buffer.alloc(128 * KiB).subarray(0, 64 * KiB)); // not a buffer of the pool
  assert.equal(pool.idleBytes, 0);

  // Bounded: what does not fit is dropped.
  for (const buf of [pool.take(128 * KiB), pool.take(128 * KiB)]) pool.give(buf);
  assert.equal(pool.idleBytes, 128 * KiB);
});

test('the server copies split write payloads into reused buffers, and every write lands intact', async () => {
  const dir = await scratchDir('payload-pool');
  /** Records the ArrayBuffer under each payload the backend was given. */
  class Recording extends MemoryBackend {
    readonly seen = new Set<ArrayBufferLike>();
    writes = 0;
    override async write(offset: number, data: Buffer, options: WriteOptions): Promise<void> {
      this.seen.add(data.buffer);
      this.writes++;
      // Give the next requests time to arrive while this one holds its buffer.
      await new Promise((resolve) => setImmediate(resolve));
      await super.write(offset, data, options);
    }
  }
  const backend = new Recording({ size: 16 * MiB, pageSize: 64 * KiB });
  const server = new NbdServer({ exports: { d: { backend } } });
  const socket = join(dir.path, 'nbd.sock');
  await server.listen({ path: socket });
  const client = await NbdClient.connect({ path: socket }, { exportName: 'd' });
  try {
    const expected = randomBytes(16 * MiB);
    // 64 KiB payloads behind 28-byte headers never start a socket read: each is copied.
    for (let round = 0; round < 4; round++) {
      const writes: Promise<void>[] = [];
      for (let at = round * 4 * MiB; at < (round + 1) * 4 * MiB; at += 64 * KiB) {
        writes.push(client.write(at, expected.subarray(at, at + 64 * KiB)));
      }
      await Promise.all(writes);
    }
    assert.ok((await client.read(0, 16 * MiB)).equals(expected));
    assert.equal(backend.writes, 256);
    assert.ok(
      backend.seen.size < backend.writes / 2,
      `${backend.seen.size} buffers for ${backend.writes} writes: payload buffers are reused`,
    );
  } finally {
    await client.disconnect();
    await server.close();
    await dir.remove();
  }
});

test('reads are answered from reused buffers, and every reply carries its own range', async () => {
  const dir = await scratchDir('payload-pool-read');
  /** Records the buffers the server offered, and holds each read a turn so replies overlap. */
  class Recording extends MemoryBackend {
    readonly offered = new Set<ArrayBufferLike>();
    reads = 0;
    override async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
      this.reads++;
      if (into === undefined) return super.read(offset, length);
      this.offered.add(into.buffer);
      await new Promise((resolve) => setImmediate(resolve));
      (await super.read(offset, length)).copy(into);
      return into;
    }
  }
  const backend = new Recording({ size: 8 * MiB, pageSize: 64 * KiB });
  const expected = randomBytes(8 * MiB);
  await backend.write(0, expected, { fua: false });
  const server = new NbdServer({ exports: { d: { backend } } });
  const socket = join(dir.path, 'nbd.sock');
  await server.listen({ path: socket });
  const client = await NbdClient.connect({ path: socket }, { exportName: 'd' });
  try {
    for (let round = 0; round < 4; round++) {
      const reads: Promise<void>[] = [];
      for (let at = 0; at < 8 * MiB; at += 64 * KiB) {
        reads.push(
          client.read(at, 64 * KiB).then((got) => {
            assert.ok(got.equals(expected.subarray(at, at + 64 * KiB)), `the reply for ${at} holds ${at}`);
          }),
        );
      }
      await Promise.all(reads);
    }
    assert.equal(backend.reads, 512);
    assert.ok(
      backend.offered.size < backend.reads / 2,
      `${backend.offered.size} buffers for ${backend.reads} reads: read buffers are reused`,
    );
  } finally {
    await client.disconnect();
    await server.close();
    await dir.remove();
  }
});
