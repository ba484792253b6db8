import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HavenError } from '../errors/index.ts';
import { checkExtFilesystem, type ExtFilesystemCheck, extJournalNeedsRecovery } from '../filesystem/index.ts';
import { runToolOrThrow } from './run-tool.ts';

/**
 * Formats a guest data disk as ext4 on the host. The guest cannot: busybox
 * has no mkfs.ext4, and a guest that formatted a disk it failed to mount
 * could wipe a damaged recovered disk instead of reporting it. With
 * `sizeBytes` the file is created (or resized) sparse first.
 *
 * Inode tables and the journal are initialised now (lazy_*_init=0), so the
 * guest kernel does not zero them in the background after the first mount:
 * those writes would show up as replication traffic nobody asked for.
 *
 * `filesystemBytes` makes the filesystem smaller than the disk, leaving its
 * end for md's metadata 1.0 (the server guest's mirror).
 */
export async function formatDataDisk(
  imagePath: string,
  options: { sizeBytes?: number; filesystemBytes?: number } = {},
): Promise<void> {
  if (options.sizeBytes !== undefined) {
    if (!Number.isSafeInteger(options.sizeBytes) || options.sizeBytes < 16 * 1024 * 1024) {
      throw new HavenError(
        'validation_failed',
        `data disk size ${options.sizeBytes} must be at least 16 MiB`,
        {
          field: 'sizeBytes',
        },
      );
    }
    const file = await open(imagePath, 'a');
    try {
      await file.truncate(options.sizeBytes);
    } finally {
      await file.close();
    }
  }
  const size = options.filesystemBytes;
  if (size !== undefined && (!Number.isSafeInteger(size) || size < 16 * 1024 * 1024 || size % 4096 !== 0)) {
    throw new HavenError(
      'validation_failed',
      `filesystem size ${size} must be a multiple of 4 KiB and at least 16 MiB`,
      { field: 'filesystemBytes' },
    );
  }
  await runToolOrThrow(
    'mkfs.ext4',
    [
      '-q',
      '-F',
      '-L',
      'haven-data',
      '-E',
      'lazy_itable_init=0,lazy_journal_init=0',
      imagePath,
      ...(size === undefined ? [] : [`${size / 1024}k`]),
    ],
    { debianPackage: 'e2fsprogs' },
  );
}

export interface DataDiskCheck {
  /** e2fsck found nothing to fix after the journal was replayed. */
  clean: boolean;
  /** The image was not cleanly unmounted (crash, power loss, crash-consistent copy). */
  journalReplayed: boolean;
  exitCode: number;
  output: string;
}

/**
 * Checks an ext4 image the way the guest would find it, without changing it:
 * when its journal needs recovery, the check (which replays it) runs on a
 * sparse copy.
 */
export async function checkDataDisk(imagePath: string): Promise<DataDiskCheck> {
  if (!(await extJournalNeedsRecovery(imagePath))) return dataDiskCheck(await checkExtFilesystem(imagePath));
  const dir = await mkdtemp(join(tmpdir(), 'haven-fsck-'));
  try {
    const copy = join(dir, 'disk.img');
    // Sparse (and a reflink where the filesystem can): a mostly empty 16 GiB disk copies in a moment.
    await runToolOrThrow('cp', ['--sparse=always', '--reflink=auto', imagePath, copy]);
    return dataDiskCheck(await checkExtFilesystem(copy));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function dataDiskCheck(check: ExtFilesystemCheck): DataDiskCheck {
  return {
    clean: check.clean,
    journalReplayed: check.journalReplayed,
    exitCode: check.exitCode ?? 1,
    output: check.output,
  };
}
