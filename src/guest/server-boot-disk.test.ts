/**
 * The server boot disk passes the "can this replica boot as a VM?" check, and
 * each way a server's disk can fail it is named with its fix.
 * Debian: e2fsprogs (debugfs), mount (losetup), cpio; root for the loop mounts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkVmBoot, type VmBootCheck, type VmBootCheckItem } from '../filesystem/index.ts';
import { buildGuestImage, filesArchive } from './build-guest-image.ts';
import { runToolOrThrow } from './run-tool.ts';
import {
  buildServerBootDisk,
  copyServerBootDisk,
  SERVER_BOOT_DISK,
  type ServerBootDisk,
} from './server-boot-disk.ts';

let root: string;
let disk: ServerBootDisk;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'haven-server-boot-disk-'));
  disk = await buildServerBootDisk(await buildGuestImage({ variant: 'server' }));
});
after(() => rm(root, { recursive: true, force: true }));

const item = (check: VmBootCheck, name: VmBootCheckItem) => {
  const found = check.results.find((r) => r.item === name);
  assert.ok(found, `${name} in ${JSON.stringify(check.results)}`);
  return found;
};

/** Writes `content` to `path` in the copy's system partition. */
async function replaceFile(image: string, path: string, content: string | Uint8Array): Promise<void> {
  const local = `${image}.file`;
  await writeFile(local, content);
  await writeFile(`${image}.requests`, `rm ${path}\nwrite ${local} ${path}\n`);
  await runToolOrThrow('debugfs', [
    '-w',
    '-f',
    `${image}.requests`,
    `${image}?offset=${SERVER_BOOT_DISK.system.offsetBytes}`,
  ]);
}

describe('server boot disk: can it boot as a VM?', () => {
  it('the built disk passes every item', async () => {
    const image = join(root, 'good.img');
    await copyServerBootDisk(disk, image, {
      cmdline: ['haven.tput=4'],
      files: { '/etc/haven-onboard': 'haven-server-agent enrol --help\n' },
    });
    const check = await checkVmBoot(image);
    assert.equal(check.bootable, true, JSON.stringify(check.results, null, 2));
    for (const name of [
      'partition-table',
      'boot-loader',
      'boot-config',
      'virtio-drivers',
      'root-filesystem',
      'fstab',
    ] as const)
      assert.equal(item(check, name).status, 'passed', JSON.stringify(item(check, name)));
    assert.match(item(check, 'boot-config').detail, /initramfs \/boot\/initramfs\.gz, \/boot\/site\.gz/);
  });

  it('an initramfs without virtio_blk fails with how to add it', async () => {
    const image = join(root, 'no-virtio.img');
    await copyServerBootDisk(disk, image);
    const archive = join(root, 'no-virtio.gz');
    await filesArchive({ '/lib/modules/nbd.ko': 'x', '/lib/modules/virtio_pci.ko': 'x' }, archive);
    const { readFile } = await import('node:fs/promises');
    await replaceFile(image, '/boot/initramfs.gz', await readFile(archive));
    const check = await checkVmBoot(image);
    assert.equal(check.bootable, false);
    const virtio = item(check, 'virtio-drivers');
    assert.equal(virtio.status, 'failed');
    assert.match(virtio.detail, /lacks virtio_blk \(/);
    assert.match(virtio.fix ?? '', /update-initramfs -u/);
  });

  it('an fstab naming /dev/md0 fails: the VM has no array', async () => {
    const image = join(root, 'fstab-md.img');
    await copyServerBootDisk(disk, image);
    await replaceFile(
      image,
      '/etc/fstab',
      'LABEL=haven-system / ext4 defaults 0 1\n/dev/md0 /data ext4 defaults 0 2\n',
    );
    const check = await checkVmBoot(image);
    assert.equal(check.bootable, false);
    const fstab = item(check, 'fstab');
    assert.equal(fstab.status, 'failed');
    assert.match(fstab.detail, /\/data \(\/dev\/md0\): an md device/);
    assert.match(fstab.fix ?? '', /UUID= or LABEL=/);
  });

  it('a disk without boot code fails at the boot loader', async () => {
    const image = join(root, 'no-loader.img');
    await copyServerBootDisk(disk, image);
    const file = await open(image, 'r+');
    await file.write(Buffer.alloc(440), 0, 440, 0);
    await file.close();
    const check = await checkVmBoot(image);
    assert.equal(check.bootable, false);
    assert.equal(item(check, 'boot-loader').status, 'failed');
    assert.match(item(check, 'boot-loader').fix ?? '', /extlinux --install/);
  });
});
