import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { startDataPath } from './data-path.ts';
import { checkSourceOnHost } from './storage-folders.ts';

let dir: string;
let images: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-storage-'));
  images = join(dir, 'images');
  await mkdir(join(images, 'vm'), { recursive: true });
  await symlink('/etc', join(images, 'etc-link'));
  await symlink(join(images, 'vm'), join(dir, 'outside-link'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

it('accepts images inside a storage folder, existing or not, through links that stay inside', async () => {
  await checkSourceOnHost('source', join(images, 'a.img'), [images]);
  await checkSourceOnHost('source', join(images, 'new', 'deeper', 'b.img'), [images]);
  await checkSourceOnHost('source', join(images, 'vm', '..', 'c.img'), [images]);
});

it('refuses a symbolic link out of the folder, `..` escapes and relative paths, naming the field', async () => {
  for (const source of [
    join(images, 'etc-link', 'passwd'),
    join(images, 'etc-link', 'haven-new', 'x.img'),
    join(images, '..', 'data.img'),
    'images/x.img',
    images,
  ]) {
    await assert.rejects(
      checkSourceOnHost('disks.0.source', source, [images]),
      (
        error: Error & {
          code?: string;
          details?: Record<string, unknown>;
        },
      ) => {
        assert.equal(error.code, 'bad_request', source);
        assert.equal(error.details?.field, 'disks.0.source');
        assert.deepEqual(error.details?.allowedFolders, [images]);
        return true;
      },
    );
  }
});

it('the host agent’s disk service refuses to attach (or create) an image outside its storage folders', async () => {
  const hostDir = join(dir, 'host');
  const path = await startDataPath({
    dataDir: hostDir,
    replicationListen: { host: '127.0.0.1', port: 0 },
    storageFolders: [images],
  });
  try {
    assert.deepEqual(path.storageFolders, [images]);
    const target = join(dir, 'elsewhere', 'x.img');
    await assert.rejects(
      path.services.disk.attach({ machineId: 'm1', diskId: 'd0', source: target, sizeBytes: 4096 }),
      { code: 'bad_request' },
    );
    await assert.rejects(
      path.services.disk.attach({
        machineId: 'm1',
        diskId: 'd0',
        source: join(images, 'etc-link', 'haven-x.img'),
        sizeBytes: 4096,
      }),
      { code: 'bad_request' },
    );
    const ok = await path.services.disk.attach({
      machineId: 'm1',
      diskId: 'd0',
      source: join(images, 'vm', 'd0.img'),
      sizeBytes: 4096,
    });
    assert.equal(ok.diskId, 'd0');
  } finally {
    await path.close();
  }
});
