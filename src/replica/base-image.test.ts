import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { allocationMapPath, createSparseImage } from '../storage/index.ts';
import { BaseImage } from './base-image.ts';

const root = await mkdtemp(join(tmpdir(), 'haven-base-image-'));
after(() => rm(root, { recursive: true, force: true }));

const MiB = 1 << 20;
/** The clean flag of the map as saved on disk. */
const savedClean = async (image: string) => (await readFile(allocationMapPath(image))).readUInt32LE(8) === 1;

test('a crash in the middle of a copy loses no chunk: the map on disk is unclean until the copy ends', async () => {
  const image = join(root, 'crash.img');
  await createSparseImage(image, 4 * MiB);
  const base = await BaseImage.open(image, 4 * MiB);
  await base.beginCopy();
  assert.equal(await savedClean(image), false);
  const data = Buffer.alloc(64 * 1024, 7);
  await base.reserve([{ offset: MiB, length: data.length }]);
  await base.write(MiB, data);
  // kill -9: the file closes without the map being saved again.
  await base.handle.close();

  const reopened = await BaseImage.open(image, 4 * MiB);
  try {
    assert.deepEqual(
      reopened.extents(MiB, data.length).map((e) => e.flags),
      [0],
      'the written chunk holds data, not a hole',
    );
    await reopened.beginCopy();
    await reopened.zero(0, 4 * MiB);
    await reopened.endCopy();
    assert.equal(await savedClean(image), true);
    assert.deepEqual(
      reopened.extents(0, 4 * MiB).map((e) => e.flags),
      [3],
    );
  } finally {
    await reopened.close();
  }
});
