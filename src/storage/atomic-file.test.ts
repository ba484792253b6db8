import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { writeFileAtomic } from './atomic-file.ts';

it('concurrent writes of one file all succeed and the last call wins', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'haven-atomic-'));
  try {
    const path = join(dir, 'state.json');
    await Promise.all(Array.from({ length: 50 }, (_, i) => writeFileAtomic(path, String(i))));
    assert.equal(await readFile(path, 'utf8'), '49');
    assert.deepEqual(await readdir(dir), ['state.json'], 'no temporary file left behind');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
