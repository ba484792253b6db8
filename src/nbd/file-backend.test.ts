import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { scratchDir } from '../testing/nbd-test-fixture.ts';
import { FileBackend } from './file-backend.ts';

test('FileBackend reads and writes at offsets, zeroes, and refuses what it cannot do', async () => {
  const dir = await scratchDir('file-backend');
  try {
    const path = join(dir.path, 'img.raw');
    const start = randomBytes(3 * 1024 * 1024 + 100);
    await writeFile(path, start);
    const b = await FileBackend.open(path);
    assert.equal(b.size, start.length);
    assert.equal(b.canTrim, false);
    const d = randomBytes(70_000);
    await b.write(12_345, d, { fua: true });
    d.copy(start, 12_345);
    await b.writeZeroes(1_000_000, 2_100_000, { fua: false, mayTrim: true });
    start.fill(0, 1_000_000, 3_100_000);
    await b.flush();
    assert.ok((await b.read(0, start.length)).equals(start));
    assert.ok((await readFile(path)).equals(start), 'the file itself holds the bytes');
    assert.deepEqual(await b.blockStatus(10, 20), [{ offset: 10, length: 20, flags: 0 }]);
    await assert.rejects(b.read(start.length - 1, 2), { code: 'bad_request' });
    await assert.rejects(b.trim(), { code: 'not_available' });
    await b.close();
    const ro = await FileBackend.open(path, { readOnly: true });
    await assert.rejects(ro.write(0, Buffer.alloc(1), { fua: false }), { code: 'forbidden' });
    await ro.close();
  } finally {
    await dir.remove();
  }
});
