/**
 * Regression: a write acknowledged just after the journal overflowed must
 * survive a process crash. Recovery replays the journal tail only when the
 * journal is not in bitmap mode, so the switch to bitmap mode has to be
 * durable before such a write is acknowledged; otherwise the replay puts an
 * older journaled write back over it.
 */
import assert from 'node:assert/strict';
import { cpSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createSparseImage } from '../storage/sparse-image.ts';
import { JournaledBackend } from './journaled-backend.ts';

const root = await mkdtemp(join(tmpdir(), 'haven-overflow-recovery-'));
after(() => rm(root, { recursive: true, force: true }));

test('a write acknowledged in bitmap mode is not undone by recovery after a crash', async () => {
  for (let i = 0; i < 5; i++) {
    const dir = join(root, `run${i}`);
    const open = (at: string) =>
      JournaledBackend.open({
        imagePath: join(at, 'disk.img'),
        journalDir: join(at, 'journal'),
        journalCapacityBytes: 8192,
        journalSegmentBytes: 8192,
      });
    await mkdir(dir);
    await createSparseImage(join(dir, 'disk.img'), 1 << 20);
    const backend = await open(dir);
    await backend.write(0, Buffer.alloc(4096, 0xaa), { fua: false });
    // Does not fit in the journal: recorded in the dirty bitmap.
    await backend.write(0, Buffer.alloc(4096, 0xbb), { fua: false });
    assert.equal(backend.journal.mode, 'bitmap');
    // What a process crash right now leaves: the files as they are (copied without yielding).
    const crashed = `${dir}-crashed`;
    cpSync(dir, crashed, { recursive: true });
    assert.match(readFileSync(join(crashed, 'journal', 'state.json'), 'utf8'), /"mode":"bitmap"/);
    await backend.close();

    const recovered = await open(crashed);
    try {
      assert.equal(recovered.recovered, true);
      assert.ok(
        (await recovered.read(0, 4096)).equals(Buffer.alloc(4096, 0xbb)),
        'the acknowledged write is kept',
      );
      assert.equal(recovered.journal.resyncRequired, true);
    } finally {
      await recovered.close();
    }
  }
});
