import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { writeMbr } from '../testing/partitioned-disk.ts';
import { identifyFilesystem, SIGNATURE_BYTES } from './filesystem-signature.ts';

const run = promisify(execFile);
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-signature-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The first SIGNATURE_BYTES of an image `tool` made. */
async function made(name: string, tool: string, args: string[]): Promise<Buffer> {
  const path = join(dir, name);
  const file = await open(path, 'w');
  await file.truncate(16 << 20);
  await file.close();
  await run(tool, [...args, path]);
  return (await readFile(path)).subarray(0, SIGNATURE_BYTES);
}

describe('filesystem signatures', () => {
  it('tells ext2, ext3 and ext4 apart, with label and UUID, as mke2fs made them', async () => {
    const uuid = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
    const ext4 = await made('ext4.img', 'mkfs.ext4', ['-q', '-F', '-L', 'root', '-U', uuid]);
    assert.deepEqual(identifyFilesystem(ext4), { type: 'ext4', label: 'root', uuid });
    assert.equal(
      identifyFilesystem(await made('ext3.img', 'mke2fs', ['-q', '-F', '-t', 'ext3'])).type,
      'ext3',
    );
    const ext2 = identifyFilesystem(await made('ext2.img', 'mke2fs', ['-q', '-F', '-t', 'ext2']));
    assert.deepEqual([ext2.type, ext2.label], ['ext2', null]);
  });

  it('knows swap as mkswap made it', async () => {
    const uuid = '11111111-2222-4333-8444-555555555555';
    const swap = await made('swap.img', 'mkswap', ['-L', 'swap0', '-U', uuid]);
    assert.deepEqual(identifyFilesystem(swap), { type: 'swap', label: 'swap0', uuid });
  });

  it('knows XFS, LUKS, LVM2, vfat and NTFS by their magic', () => {
    const head = () => Buffer.alloc(SIGNATURE_BYTES);
    const xfs = head();
    xfs.write('XFSB', 0, 'latin1');
    xfs.write('data', 108, 'latin1');
    assert.deepEqual(identifyFilesystem(xfs), { type: 'xfs', label: 'data', uuid: null });
    const luks = head();
    Buffer.from('LUKS\xba\xbe', 'latin1').copy(luks, 0);
    luks.write('4f1c2b8e-0000-4000-8000-000000000001', 168, 'latin1');
    assert.deepEqual(identifyFilesystem(luks), {
      type: 'luks',
      label: null,
      uuid: '4f1c2b8e-0000-4000-8000-000000000001',
    });
    const lvm = head();
    lvm.write('LABELONE', 512, 'latin1');
    lvm.writeUInt32LE(32, 512 + 20);
    lvm.write('LVM2 001', 512 + 24, 'latin1');
    lvm.write('AbCdEfGhIjKlMnOpQrStUvWxYz012345', 512 + 32, 'latin1');
    assert.deepEqual(identifyFilesystem(lvm), {
      type: 'lvm2-member',
      label: null,
      uuid: 'AbCdEfGhIjKlMnOpQrStUvWxYz012345',
    });
    const fat = head();
    fat.write('FAT32   ', 82, 'latin1');
    fat.write('EFI        ', 71, 'latin1');
    fat.writeUInt32LE(0x1234abcd, 67);
    fat[510] = 0x55;
    fat[511] = 0xaa;
    assert.deepEqual(identifyFilesystem(fat), { type: 'vfat', label: 'EFI', uuid: '1234-ABCD' });
    const ntfs = head();
    ntfs.write('NTFS    ', 3, 'latin1');
    assert.equal(identifyFilesystem(ntfs).type, 'ntfs');
  });

  it('an MBR, zeroes and noise are unknown', () => {
    const mbr = Buffer.alloc(SIGNATURE_BYTES);
    writeMbr(mbr, [{ firstSector: 2048, sectors: 2048, type: 0x83 }]);
    for (const head of [mbr, Buffer.alloc(SIGNATURE_BYTES), Buffer.alloc(10)]) {
      assert.deepEqual(identifyFilesystem(head), { type: 'unknown', label: null, uuid: null });
    }
  });
});
