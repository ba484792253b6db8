/**
 * Test-only: damages an ext2/3/4 filesystem the way a drill must catch, by
 * overwriting the inode table of its first block group (the root directory's
 * inode is there) with random bytes, through an NBD export: a writable view,
 * so the damage lands in its overlay and never in the replica.
 */
import { randomBytes } from 'node:crypto';
import { parseNbdUri } from '../hypervisor/index.ts';
import { NbdClient } from '../nbd/index.ts';

const EXT_MAGIC = 0xef53;
const INCOMPAT_64BIT = 0x80;

export interface InodeTableDamage {
  /** Where the garbage went, from the start of the disk. */
  offsetBytes: number;
  length: number;
}

export async function damageInodeTable(
  nbdUri: string,
  options: { filesystemOffsetBytes?: number } = {},
): Promise<InodeTableDamage> {
  const target = parseNbdUri(nbdUri);
  if (target.server.type !== 'unix')
    throw new Error(`damageInodeTable wants an nbd+unix URI, not '${nbdUri}'`);
  const client = await NbdClient.connect({ path: target.server.path }, { exportName: target.export });
  try {
    const start = options.filesystemOffsetBytes ?? 0;
    const sb = await client.read(start + 1024, 1024);
    if (sb.readUInt16LE(56) !== EXT_MAGIC)
      throw new Error(`no ext superblock at offset ${start} of '${nbdUri}'`);
    const blockSize = 1024 << sb.readUInt32LE(24);
    const firstDataBlock = sb.readUInt32LE(20);
    const inodesPerGroup = sb.readUInt32LE(40);
    const inodeSize = sb.readUInt16LE(88);
    const is64 = (sb.readUInt32LE(96) & INCOMPAT_64BIT) !== 0;
    // Group 0's descriptor opens the descriptor table, in the block after the superblock's.
    const descriptor = await client.read(start + (firstDataBlock + 1) * blockSize, 64);
    const tableBlock = descriptor.readUInt32LE(8) + (is64 ? descriptor.readUInt32LE(0x28) * 2 ** 32 : 0);
    const damage = { offsetBytes: start + tableBlock * blockSize, length: inodesPerGroup * inodeSize };
    await client.write(damage.offsetBytes, randomBytes(damage.length));
    await client.flush();
    return damage;
  } finally {
    await client.disconnect();
  }
}
