import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { scratchDir } from '../testing/nbd-test-fixture.ts';
import { FileIo, SyncBudget } from './file-io.ts';

test('FileIo reads, writes and writevs at positions, synchronously and on the threadpool', async () => {
  const dir = await scratchDir('file-io');
  try {
    for (const mode of ['adaptive', 'async'] as const) {
      const path = join(dir.path, `${mode}.raw`);
      const start = randomBytes(200_000);
      await writeFile(path, start);
      const fh = await open(path, 'r+');
      const budget = new SyncBudget({ mode });
      const io = new FileIo(fh.fd, budget);
      const a = randomBytes(5000);
      const b = randomBytes(70_000);
      const c = randomBytes(3);
      await io.writeFully(a, 10);
      a.copy(start, 10);
      await io.writevFully([b, c], 100_000);
      b.copy(start, 100_000);
      c.copy(start, 170_000);
      assert.ok((await io.readFully(0, start.length)).equals(start));
      const tail = await io.readFully(start.length - 10, 30);
      assert.ok(tail.subarray(0, 10).equals(start.subarray(-10)), 'bytes present are read');
      assert.ok(tail.subarray(10).equals(Buffer.alloc(20)), 'past the end reads as zeroes');
      await fh.close();
      assert.ok((await readFile(path)).equals(start), `${mode}: the file holds the bytes`);
      // Errors come back as rejections on both paths, never as a synchronous throw.
      const bad = new FileIo(-1, budget);
      const pending = bad.read(Buffer.alloc(4), 0, 4, 0);
      await assert.rejects(pending, { code: 'ERR_OUT_OF_RANGE' });
    }
  } finally {
    await dir.remove();
  }
});

test('SyncBudget moves to the threadpool after a slow call, and comes back after the backoff', async () => {
  let clock = 0;
  const budget = new SyncBudget({
    slowMs: 1,
    slowWriteMs: 3,
    bytesPerMs: 1000,
    backoffMs: 50,
    syncMaxReadBytes: 10_000,
    now: () => clock,
  });
  const ran: string[] = [];
  const call = (bytes: number, syncTakesMs: number, kind: 'read' | 'write' = 'read') =>
    budget.run(
      kind,
      bytes,
      () => {
        clock += syncTakesMs;
        ran.push('sync');
        return 1;
      },
      async () => {
        ran.push('async');
        return 2;
      },
    );
  assert.equal(await call(0, 0.5), 1);
  // 4000 bytes at 1000 bytes/ms may take 1 + 4 ms: 4.5 ms is not slow.
  assert.equal(await call(4000, 4.5), 1);
  assert.equal(await call(0, 2), 1, 'the slow call itself completes synchronously');
  assert.equal(await call(0, 0), 2);
  clock += 49;
  assert.equal(await call(0, 0), 2);
  clock += 2;
  assert.equal(await call(0, 0), 1);
  assert.equal(await call(10_001, 0), 2, 'large reads always go to the threadpool');
  assert.equal(await call(10_001, 0, 'write'), 1, 'large writes do not');
  assert.equal(await call(0, 2.5, 'write'), 1);
  assert.equal(await call(0, 0, 'write'), 1, 'writes have a roomier budget');
  assert.equal(await call(0, 3.5, 'write'), 1);
  assert.equal(await call(0, 0, 'write'), 2, 'but a really slow write moves them too');
  assert.deepEqual(ran, [
    ...['sync', 'sync', 'sync', 'async', 'async', 'sync', 'async'],
    ...['sync', 'sync', 'sync', 'sync', 'async'],
  ]);
  assert.equal(budget.deferred, 3);
});
