import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PRIVATE_FILE_MODE } from './private-files.ts';

/** Writes in progress per file: a file's writes run one after another, in call order. */
const pending = new Map<string, Promise<void>>();

/**
 * Replaces a small file atomically and durably: write a temporary file, sync
 * it, rename it over the old one, sync the directory. A crash leaves either
 * the old or the new contents, never a mix. Concurrent calls for one file
 * (machines of a plan group operated together) are queued: they would share
 * the temporary file, and the last call's contents must be the ones kept.
 */
export function writeFileAtomic(path: string, contents: Buffer | string): Promise<void> {
  const previous = pending.get(path) ?? Promise.resolve();
  const write = previous.catch(() => {}).then(() => replace(path, contents));
  pending.set(path, write);
  const forget = () => {
    if (pending.get(path) === write) pending.delete(path);
  };
  write.then(forget, forget);
  return write;
}

async function replace(path: string, contents: Buffer | string): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w', PRIVATE_FILE_MODE);
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
