import { open } from 'node:fs/promises';
import { HavenError } from '../errors/index.ts';
import { AllocationMap } from './allocation-map.ts';
import { PRIVATE_FILE_MODE } from './private-files.ts';

/**
 * Creates a sparse raw image (all hole) and its allocation map. Refuses to
 * overwrite an existing file: that would destroy a disk.
 */
export async function createSparseImage(path: string, sizeBytes: number, chunkSize = 65536): Promise<void> {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % 512 !== 0) {
    throw new HavenError(
      'validation_failed',
      `disk size ${sizeBytes} must be a positive multiple of 512 bytes`,
      {
        field: 'size',
        value: sizeBytes,
      },
    );
  }
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, 'wx', PRIVATE_FILE_MODE);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new HavenError(
        'conflict',
        `'${path}' already exists; refusing to overwrite it with a new disk image`,
        {
          path,
        },
      );
    }
    throw e;
  }
  try {
    await fh.truncate(sizeBytes);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await AllocationMap.create(path, sizeBytes, chunkSize);
}
