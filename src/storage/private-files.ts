/**
 * Everything Haven keeps holds secrets or disk contents (the vault's database
 * with its TLS key and host credential hashes, backups, host identities,
 * images, journals, replicas): owner only. One mechanism: every entry point
 * sets a restrictive umask, files are also created with explicit modes, and
 * a data directory from an older version is tightened at start. What a
 * hypervisor running as another user must open is shared through a group
 * (share-group.ts), never with every local user.
 */
import { chmod, lstat, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isMainThread } from 'node:worker_threads';

export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;
const GROUP_AND_OTHER = 0o077;

/** Files and folders created from now on by this process (and its children) are its user's only. */
export function restrictUmask(): void {
  // Worker threads share the process's umask and may not set it.
  if (isMainThread) process.umask(process.umask() | GROUP_AND_OTHER);
}

/**
 * Creates `dir` (0700) or takes group and other permissions away from it and
 * everything below it: data directories made by older versions were 0755
 * with 0644 files.
 */
export async function tightenDataDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await tighten(dir);
}

async function tighten(path: string): Promise<void> {
  const stats = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null;
    throw error;
  });
  if (stats === null || stats.isSymbolicLink()) return;
  if ((stats.mode & GROUP_AND_OTHER) !== 0) await chmod(path, stats.mode & 0o7700);
  if (stats.isDirectory()) {
    for (const name of await readdir(path)) await tighten(join(path, name));
  }
}
