import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CheckerRun, runChecker } from './run-checker.ts';

export interface XfsFilesystemCheck {
  clean: boolean;
  journalReplayed: boolean;
  /** Why it is not clean; null when it is. */
  reason: string | null;
  output: string;
  outputTruncated: boolean;
  aborted: boolean;
}

const XFSPROGS = { debianPackage: 'xfsprogs' } as const;
const UTIL_LINUX = { debianPackage: 'util-linux' } as const;
/** What xfs_repair -n says of a log that holds changes (it ignores them, then judges stale metadata). */
const DIRTY_LOG = /valuable metadata changes in a log|log which needs to be replayed/i;

/**
 * Checks an XFS filesystem at `offsetBytes` of the file with `xfs_repair -n`
 * (read-only) through a loop device. A dirty log (a crash-consistent point)
 * is replayed first the only way XFS can: the kernel mounts it and unmounts
 * it, which WRITES to the file: callers pass an overlay. `not_available`
 * when xfsprogs is not installed.
 */
export async function checkXfsFilesystem(at: {
  file: string;
  offsetBytes: number;
  sizeBytes: number;
  signal: AbortSignal;
}): Promise<XfsFilesystemCheck> {
  const { signal } = at;
  await runChecker('xfs_repair', ['-V'], { ...XFSPROGS, signal });
  const attach = await runChecker(
    'losetup',
    ['--find', '--show', '--offset', String(at.offsetBytes), '--sizelimit', String(at.sizeBytes), at.file],
    { ...UTIL_LINUX, signal },
  );
  if (attach.exitCode !== 0) return notClean('no loop device could be attached to it', attach);
  const device = attach.output.trim();
  try {
    const first = await runChecker('xfs_repair', ['-n', device], { ...XFSPROGS, signal });
    if (first.aborted || first.exitCode === 0) return verdict(first, false);
    if (!DIRTY_LOG.test(first.output)) return verdict(first, false);
    const dir = await mkdtemp(join(tmpdir(), 'haven-xfs-'));
    try {
      // nouuid: a copy of the filesystem may be mounted on this host already (another drill of the machine).
      const mount = await runChecker('mount', ['-t', 'xfs', '-o', 'nouuid', device, dir], {
        ...UTIL_LINUX,
        signal,
      });
      if (mount.exitCode !== 0)
        return notClean('its log could not be replayed: the kernel did not mount it', mount);
    } finally {
      // Also when the time limit killed mount after it mounted.
      await runChecker('umount', [dir], UTIL_LINUX);
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
    return verdict(await runChecker('xfs_repair', ['-n', device], { ...XFSPROGS, signal }), true);
  } finally {
    // Not under the time limit: the loop device must go whatever happened.
    await runChecker('losetup', ['-d', device], UTIL_LINUX);
  }
}

function verdict(run: CheckerRun, journalReplayed: boolean): XfsFilesystemCheck {
  return {
    clean: run.exitCode === 0,
    journalReplayed,
    reason: run.exitCode === 0 ? null : `xfs_repair -n found errors (exit code ${run.exitCode})`,
    output: run.output,
    outputTruncated: run.outputTruncated,
    aborted: run.aborted,
  };
}

function notClean(reason: string, run: CheckerRun): XfsFilesystemCheck {
  return {
    clean: false,
    journalReplayed: false,
    reason,
    output: run.output,
    outputTruncated: run.outputTruncated,
    aborted: run.aborted,
  };
}
