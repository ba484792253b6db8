import { HavenError } from '../errors/index.ts';

/** Refuses a request that is closed out, malformed or past the end of the disk (`label` names it in the message). */
export function checkRange(
  what: string,
  offset: number,
  length: number,
  disk: { size: number; label: string; closed: boolean },
): void {
  if (disk.closed) throw new HavenError('operation_not_allowed', `${disk.label} is closed`, {});
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new HavenError('bad_request', `${what}: offset and length must be non-negative integers`, {
      offset,
      length,
    });
  }
  if (offset + length > disk.size) {
    throw new HavenError(
      'bad_request',
      `${what} of ${length} bytes at ${offset} goes past the end of the ${disk.size}-byte ${disk.label}`,
      { offset, length, size: disk.size },
    );
  }
}
