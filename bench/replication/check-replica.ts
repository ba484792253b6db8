import { open } from 'node:fs/promises';
import { blockDigest, digestAt } from '../../src/disk/index.ts';
import type { Sender } from '../../src/replication/index.ts';

const BLOCK_BYTES = 1 << 20;

/**
 * Throws unless the replica of `diskKey` holds exactly the image at
 * `imagePath`: compares SHA-256 digests per MiB, the replica's taken by its
 * receiver once it has acknowledged every journaled record. The disk must be
 * quiet (nothing writing to it).
 */
export async function checkReplica(sender: Sender, diskKey: string, imagePath: string): Promise<void> {
  const hashes = await sender.replicaHashes(diskKey, { blockBytes: BLOCK_BYTES, timeoutMs: 600_000 });
  const fh = await open(imagePath, 'r');
  const buf = Buffer.allocUnsafe(BLOCK_BYTES);
  let differing = 0;
  try {
    for (let i = 0; i < hashes.blockCount; i++) {
      const at = i * BLOCK_BYTES;
      const { bytesRead } = await fh.read(buf, 0, Math.min(BLOCK_BYTES, hashes.sizeBytes - at), at);
      if (!blockDigest(buf.subarray(0, bytesRead)).equals(digestAt(hashes, i))) differing++;
    }
  } finally {
    await fh.close();
  }
  if (differing > 0) throw new Error(`the replica of ${diskKey} differs from the source in ${differing} MiB`);
}
