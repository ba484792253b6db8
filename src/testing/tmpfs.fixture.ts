/**
 * A small tmpfs mounted for a test that fills a file system (root only).
 * Not exported from index.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, runOk } from './nbd-test-fixture.ts';

/** Why tests that mount a tmpfs cannot run here, or null when they can. */
export function tmpfsUnavailable(): string | null {
  return process.getuid?.() === 0 ? null : 'mounting a tmpfs needs root';
}

/** Mounts a tmpfs of `sizeBytes` on a fresh folder, runs `fn` with it, then unmounts it whatever happened. */
export async function withTmpfs<T>(sizeBytes: number, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'haven-tmpfs-'));
  try {
    await runOk('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir]);
    try {
      return await fn(dir);
    } finally {
      const r = await run('umount', [dir]);
      // Something still holds a file there: detach it so no mount outlives the test.
      if (r.code !== 0) await run('umount', ['-l', dir]);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
