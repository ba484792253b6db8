import { open } from 'node:fs/promises';
import { HavenError } from '../errors/index.ts';
import { AllocationMap } from './allocation-map.ts';
import { PRIVATE_FILE_MODE } from './private-files.ts';

const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 };

/** Parses a disk size: bytes, or a number with K, M, G, T or P (binary units; `10G`, `512MiB`, `1T`). */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*$/i.exec(text);
  const unit = UNITS[(match?.[2] ?? '').toUpperCase()];
  const bytes = match !== null && unit !== undefined ? Number(match[1]) * unit : Number.NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new HavenError(
      'validation_failed',
      `size '${text}' is not a positive whole number of bytes; write bytes or a number with K, M, G, T or P (e.g. 10G)`,
      { field: 'size', value: text },
    );
  }
  return bytes;
}

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
