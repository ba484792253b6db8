import { open, unlink } from 'node:fs/promises';
import type { FileSync } from './file-sync.ts';

/** Whether an error says the file system (or the user's quota on it) is full. */
export function isNoSpace(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * A file of real (not sparse) blocks kept on a file system so that, once it is
 * full, deleting it frees room for the few small writes that record what
 * happened (a state file's atomic replace). Without it, a full file system
 * could not even record that it is full.
 */
export class SpaceReserve {
  readonly path: string;
  readonly bytes: number;
  readonly #fileSync: FileSync;

  constructor(path: string, bytes: number, fileSync: FileSync) {
    this.path = path;
    this.bytes = bytes;
    this.#fileSync = fileSync;
  }

  /** Makes sure the reserve exists with all its blocks; false when the file system has no room for it. */
  async ensure(): Promise<boolean> {
    const fh = await open(this.path, 'a+');
    try {
      const { size } = await fh.stat();
      if (size >= this.bytes) return true;
      // Written, not truncated: a sparse file would free nothing when deleted.
      const zeroes = Buffer.alloc(this.bytes - size);
      await fh.write(zeroes, 0, zeroes.length, size);
      await this.#fileSync.datasync(fh);
      return true;
    } catch (e) {
      if (!isNoSpace(e)) throw e;
      await fh.close();
      await this.release();
      return false;
    } finally {
      await fh.close().catch(() => {});
    }
  }

  /** Deletes the reserve, giving its blocks back to the file system. */
  async release(): Promise<void> {
    await unlink(this.path).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }
}
