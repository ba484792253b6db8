/** md superblocks (metadata 1.x) as the kernel writes them, for tests of the leg tracking. */
import { MAX_SECTOR, MD_SB_FIXED_BYTES, MD_SB_MAGIC, mdSuperblockChecksum } from '../disk/md-superblock.ts';

/** Builds a superblock as md writes it (fields left out: a clean in-sync member in slot 1 of 2). */
export function buildMdSuperblock(fields: {
  arrayUuid?: Buffer;
  featureMap?: number;
  raidDisks?: number;
  devNumber?: number;
  roles?: number[];
  events?: bigint;
  resyncOffset?: bigint;
  recoveryOffset?: bigint;
  sizeSectors?: bigint;
}): Buffer {
  const roles = fields.roles ?? [0, 1];
  const sb = Buffer.alloc(MD_SB_FIXED_BYTES + roles.length * 2);
  sb.writeUInt32LE(MD_SB_MAGIC, 0);
  sb.writeUInt32LE(1, 4);
  sb.writeUInt32LE(fields.featureMap ?? 0, 8);
  (fields.arrayUuid ?? Buffer.alloc(16, 0xab)).copy(sb, 16);
  sb.writeUInt32LE(1, 72);
  sb.writeBigUInt64LE(fields.sizeSectors ?? 0n, 80);
  sb.writeUInt32LE(fields.raidDisks ?? 2, 92);
  sb.writeBigUInt64LE(fields.recoveryOffset ?? 0n, 152);
  sb.writeUInt32LE(fields.devNumber ?? 1, 160);
  sb.writeBigUInt64LE(fields.events ?? 1n, 200);
  sb.writeBigUInt64LE(fields.resyncOffset ?? MAX_SECTOR, 208);
  sb.writeUInt32LE(roles.length, 220);
  for (const [i, role] of roles.entries()) sb.writeUInt16LE(role, MD_SB_FIXED_BYTES + i * 2);
  sb.writeUInt32LE(mdSuperblockChecksum(sb), 216);
  return sb;
}
