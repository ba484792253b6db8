import type { FileHandle } from 'node:fs/promises';

/**
 * The seam through which the disk service makes bytes durable. Tests inject a
 * counting implementation to check that concurrent flushes share one sync.
 */
export interface FileSync {
  datasync(handle: FileHandle): Promise<void>;
}

export const realFileSync: FileSync = {
  datasync: (handle) => handle.datasync(),
};
