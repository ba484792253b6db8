import { createHash } from 'node:crypto';
import { HavenError } from '../errors/index.ts';

/** Bytes of one SHA-256 digest. */
export const DIGEST_BYTES = 32;

/**
 * SHA-256 digests of a disk's blocks, in one buffer (32 bytes per block):
 * block `i` covers `[i * blockBytes, min((i + 1) * blockBytes, sizeBytes))`,
 * so the last block may be shorter. `throughSeq` is the last journal record
 * the hashed contents include (the replica's durable sequence when they were
 * read).
 */
export interface BlockHashes {
  blockBytes: number;
  sizeBytes: number;
  blockCount: number;
  /** `blockCount * 32` bytes: the digest of block `i` at `i * 32`. */
  digests: Buffer;
  throughSeq: number;
}

/** SHA-256 of `data` (a block's contents). */
export function blockDigest(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

/** Blocks of `blockBytes` covering a disk of `sizeBytes` (the last one may be shorter). */
export function blockCountOf(sizeBytes: number, blockBytes: number): number {
  return Math.ceil(sizeBytes / blockBytes);
}

/** Checks the structure's sizes agree with each other and with the disk it is for. */
export function checkBlockHashes(hashes: BlockHashes, sizeBytes: number): void {
  const bad = (why: string): never => {
    throw new HavenError('validation_failed', `block hashes ${why}`, { field: 'hashes' });
  };
  if (!Number.isSafeInteger(hashes.blockBytes) || hashes.blockBytes <= 0 || hashes.blockBytes % 512 !== 0) {
    bad(`have a block size of ${hashes.blockBytes}; it must be a positive multiple of 512`);
  }
  if (hashes.sizeBytes !== sizeBytes) {
    bad(`are of a ${hashes.sizeBytes}-byte disk, not of this ${sizeBytes}-byte one`);
  }
  if (hashes.blockCount !== blockCountOf(sizeBytes, hashes.blockBytes)) {
    bad(
      `hold ${hashes.blockCount} blocks; a ${sizeBytes}-byte disk has ${blockCountOf(sizeBytes, hashes.blockBytes)}`,
    );
  }
  if (hashes.digests.length !== hashes.blockCount * DIGEST_BYTES) {
    bad(`hold ${hashes.digests.length} digest bytes for ${hashes.blockCount} blocks`);
  }
  if (!Number.isSafeInteger(hashes.throughSeq) || hashes.throughSeq < -1) {
    bad(`name no valid sequence (${hashes.throughSeq})`);
  }
}

/** The digest of block `index`: a view into the buffer, not a copy. */
export function digestAt(hashes: BlockHashes, index: number): Buffer {
  return hashes.digests.subarray(index * DIGEST_BYTES, (index + 1) * DIGEST_BYTES);
}
