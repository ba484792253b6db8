import { open, readFile, rm } from 'node:fs/promises';
import { MD_SB_READ_BYTES, mdSuperblockOffset, parseMdSuperblock } from '../disk/md-superblock.ts';
import { writeFileAtomic } from '../storage/atomic-file.ts';
import type { DiskRegion } from './host-services.ts';

/** More than this after the array's data is no md metadata 1.0 Haven wrote: left alone. */
const MAX_TAIL_BYTES = 64 << 20;

/**
 * A physical server's staging image ends with its NBD leg's md metadata
 * (metadata 1.0: superblock and write-intent bitmap after the array's data).
 * Failing back writes the recovery VM's disk into the staging image, and that
 * disk carries md metadata of its own — the replica's, which the VM's md
 * updated when it assembled its array alone, with event counts the server's
 * own member may not reach. Written onto the leg, it would let md at the
 * server's next boot take the stale leg for the fresh member. So the leg's
 * own metadata is kept across the write: saved beside the image when reprotect
 * adopts it (before it moves into the replica store; a retry after a crash
 * still finds it), put back when failback has written the image.
 */
export async function saveMdMetadataTail(imagePath: string): Promise<void> {
  const saved = savedTailPath(imagePath);
  const file = await open(imagePath, 'r').catch((error: NodeJS.ErrnoException) => {
    // Already moved into the replica store by an earlier (interrupted) adoption: kept aside then, or never was.
    if (error.code === 'ENOENT') return null;
    throw error;
  });
  if (file === null) return;
  try {
    const size = (await file.stat()).size;
    const at = mdSuperblockOffset(size);
    if (at === null) return;
    const bytes = Buffer.alloc(MD_SB_READ_BYTES);
    await file.read(bytes, 0, bytes.length, at);
    const sb = parseMdSuperblock(bytes);
    // Metadata 1.0 only: the data starts at 0 and ends where the metadata begins.
    if (sb === null) return;
    const start = Number(sb.sizeSectors) * 512;
    if (start <= 0 || start >= size || size - start > MAX_TAIL_BYTES) return;
    const tail = Buffer.alloc(size - start);
    await file.read(tail, 0, tail.length, start);
    const header = Buffer.alloc(8);
    header.writeBigUInt64LE(BigInt(start));
    await writeFileAtomic(saved, Buffer.concat([header, tail]));
  } finally {
    await file.close();
  }
}

/** Puts the saved metadata back (see saveMdMetadataTail); answers where it starts, null when none was saved. */
export async function restoreMdMetadataTail(imagePath: string): Promise<number | null> {
  const saved = savedTailPath(imagePath);
  const contents = await readFile(saved).catch(() => null);
  if (contents === null || contents.length < 8) return null;
  const start = Number(contents.readBigUInt64LE(0));
  const file = await open(imagePath, 'r+');
  try {
    await file.write(contents, 8, contents.length - 8, start);
    await file.sync();
  } finally {
    await file.close();
  }
  await rm(saved, { force: true });
  return start;
}

/** The regions below `end` (the array's data), for a list of what was written. */
export function regionsBelow(regions: DiskRegion[] | null, end: number | null): DiskRegion[] | null {
  if (regions === null || end === null) return regions;
  return regions.flatMap((r) =>
    r.offset >= end ? [] : [{ ...r, length: Math.min(r.length, end - r.offset) }],
  );
}

function savedTailPath(imagePath: string): string {
  return `${imagePath}.md-metadata`;
}
