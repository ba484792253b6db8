/**
 * A staging image keeps its leg's md metadata across failback's write of the
 * recovery VM's disk (whose md metadata differs): saved beside the image,
 * put back, the regions answered cut where it begins; a repeated adoption
 * (the image already moved into the replica store) keeps what was saved.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { mdSuperblockOffset } from '../disk/md-superblock.ts';
import { buildMdSuperblock } from '../testing/md-superblock.fixture.ts';
import { regionsBelow, restoreMdMetadataTail, saveMdMetadataTail } from './md-metadata-tail.ts';

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
const DATA = 7 * MiB;
const dir = await mkdtemp(join(tmpdir(), 'haven-md-tail-'));
after(() => rm(dir, { recursive: true, force: true }));

function leg(events: bigint, fill: number): Buffer {
  const image = Buffer.alloc(SIZE, fill);
  buildMdSuperblock({ events, sizeSectors: BigInt(DATA / 512) }).copy(image, mdSuperblockOffset(SIZE)!);
  return image;
}

test("the leg's own md metadata survives the write of the VM's disk, also when retried", async () => {
  const image = join(dir, 'disk0.img');
  const own = leg(10n, 1);
  await writeFile(image, own);
  await saveMdMetadataTail(image);
  // Adopted: the image moves into the replica store; a repeated adoption finds nothing to save.
  await rename(image, `${image}.adopted`);
  await saveMdMetadataTail(image);
  // Failback writes the recovery VM's disk, with md metadata of its own (higher events), back in place.
  await writeFile(image, leg(99n, 2));
  assert.equal(await restoreMdMetadataTail(image), DATA);
  const after = await readFile(image);
  assert.ok(after.subarray(DATA).equals(own.subarray(DATA)), "the leg's metadata is its own");
  assert.ok(after.subarray(0, DATA).equals(Buffer.alloc(DATA, 2)), "the data is the VM's");
  assert.equal(await restoreMdMetadataTail(image), null, 'put back once');
  assert.deepEqual(
    regionsBelow(
      [
        { offset: 0, length: MiB },
        { offset: DATA - 4096, length: 8192 },
        { offset: DATA + 4096, length: 4096 },
      ],
      DATA,
    ),
    [
      { offset: 0, length: MiB },
      { offset: DATA - 4096, length: 4096 },
    ],
  );
});

test('an image without md metadata is left alone', async () => {
  const image = join(dir, 'plain.img');
  await writeFile(image, Buffer.alloc(SIZE, 3));
  await saveMdMetadataTail(image);
  assert.equal(await restoreMdMetadataTail(image), null);
});
