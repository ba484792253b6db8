import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Replaces a small file atomically and durably: write a temporary file, sync
 * it, rename it over the old one, sync the directory. A crash leaves either
 * the old or the new contents, never a mix.
 */
export async function writeFileAtomic(path: string, contents: Buffer | string): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(contents);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await syncDirectory(dirname(path));
}

export async function syncDirectory(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
