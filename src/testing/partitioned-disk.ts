/**
 * Test-only: partition tables written into a disk image the way fdisk and
 * gdisk write them (primary MBR entries; a GPT with its checksums behind a
 * protective MBR), to check the reader against. No backup GPT is written.
 */
import { crc32 } from 'node:zlib';

const SECTOR = 512;

import { writeMbr } from '../filesystem/partition-table.ts';

export { type MbrPartition, writeMbr } from '../filesystem/partition-table.ts';

export interface GptPartition {
  firstSector: number;
  lastSector: number;
  typeGuid: string;
}

/** GUID type of a Linux filesystem partition, and of Linux swap. */
export const LINUX_FILESYSTEM_GUID = '0fc63daf-8483-4772-8e79-3d69d8477de4';
export const LINUX_SWAP_GUID = '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f';

/** A protective MBR, the GPT header in LBA 1 and 128 entries from LBA 2, checksums included. */
export function writeGpt(disk: Buffer, partitions: GptPartition[]): void {
  const sectors = disk.length / SECTOR;
  writeMbr(disk, [{ firstSector: 1, sectors: Math.min(sectors - 1, 0xffffffff), type: 0xee }]);
  const entries = Buffer.alloc(128 * 128);
  for (const [i, p] of partitions.entries()) {
    const entry = entries.subarray(i * 128, (i + 1) * 128);
    guidBytes(p.typeGuid).copy(entry, 0);
    guidBytes(`00000000-0000-4000-8000-${(i + 1).toString(16).padStart(12, '0')}`).copy(entry, 16);
    entry.writeBigUInt64LE(BigInt(p.firstSector), 32);
    entry.writeBigUInt64LE(BigInt(p.lastSector), 40);
  }
  entries.copy(disk, 2 * SECTOR);
  const header = Buffer.alloc(92);
  header.write('EFI PART', 0, 'latin1');
  header.writeUInt32LE(0x00010000, 8);
  header.writeUInt32LE(92, 12);
  header.writeBigUInt64LE(1n, 24);
  header.writeBigUInt64LE(BigInt(sectors - 1), 32);
  header.writeBigUInt64LE(34n, 40);
  header.writeBigUInt64LE(BigInt(sectors - 34), 48);
  guidBytes('11111111-2222-4333-8444-555555555555').copy(header, 56);
  header.writeBigUInt64LE(2n, 72);
  header.writeUInt32LE(128, 80);
  header.writeUInt32LE(128, 84);
  header.writeUInt32LE(crc32(entries), 88);
  header.writeUInt32LE(crc32(header), 16);
  disk.fill(0, SECTOR, 2 * SECTOR);
  header.copy(disk, SECTOR);
}

/** A GUID's 16 bytes as GPT stores them: the first three groups little-endian. */
export function guidBytes(guid: string): Buffer {
  const [a, b, c, d, e] = guid.split('-') as [string, string, string, string, string];
  const le = (hex: string) => Buffer.from(hex, 'hex').reverse();
  return Buffer.concat([le(a), le(b), le(c), Buffer.from(d, 'hex'), Buffer.from(e, 'hex')]);
}
