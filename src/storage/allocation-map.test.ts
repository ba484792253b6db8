import assert from 'node:assert/strict';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { JournaledBackend } from '../disk/journaled-backend.ts';
import { createSparseImage } from './sparse-image.ts';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function backendOver(image: string, dir: string): Promise<JournaledBackend> {
  return JournaledBackend.open({
    imagePath: image,
    journalDir: join(dir, 'journal'),
    journalCapacityBytes: 8 << 20,
  });
}

describe('allocation map', () => {
  it('sees data written to the image by something else since its last clean save', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'haven-alloc-'));
    dirs.push(dir);
    const image = join(dir, 'disk.img');
    await createSparseImage(image, 4 << 20);
    // The machine ran without the disk service: QEMU wrote straight to the file.
    await new Promise((r) => setTimeout(r, 20));
    const file = await open(image, 'r+');
    await file.write(Buffer.alloc(4096, 0x7e), 0, 4096, 1 << 20);
    await file.close();

    const backend = await backendOver(image, dir);
    try {
      const extents = await backend.blockStatus(1 << 20, 65536);
      assert.equal(extents[0]!.flags & 1, 0, 'the written chunk must not be reported as a hole');
      assert.deepEqual(await backend.read(1 << 20, 4096), Buffer.alloc(4096, 0x7e));
    } finally {
      await backend.close();
    }
  });

  it('trusts its map after a clean close when nothing else wrote to the image', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'haven-alloc-'));
    dirs.push(dir);
    const image = join(dir, 'disk.img');
    await createSparseImage(image, 4 << 20);
    const first = await backendOver(image, dir);
    await first.write(0, Buffer.alloc(65536, 1), { fua: true });
    await first.close();
    const again = await backendOver(image, dir);
    try {
      const [data, hole] = await again.blockStatus(0, 4 << 20);
      assert.equal(data!.flags & 1, 0);
      assert.equal(data!.length, 65536);
      assert.equal(hole!.flags & 1, 1, 'the rest is still known to be a hole');
    } finally {
      await again.close();
    }
  });
});
