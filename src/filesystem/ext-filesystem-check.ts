import { runChecker } from './run-checker.ts';

export interface ExtFilesystemCheck {
  /** e2fsck -fn found nothing to fix (after the journal was replayed, when it needed to be). */
  clean: boolean;
  /** The filesystem was not cleanly unmounted (crash, power loss, crash-consistent point): its journal was replayed. */
  journalReplayed: boolean;
  /** The journal needed recovery and e2fsck could not replay it: not clean, not checked further. */
  replayFailed: boolean;
  /** e2fsck's exit code; null when the check was stopped. */
  exitCode: number | null;
  /** What the tools printed, bounded. */
  output: string;
  outputTruncated: boolean;
  /** The time limit stopped it: no verdict. */
  aborted: boolean;
}

const E2FSPROGS = { debianPackage: 'e2fsprogs' } as const;

/**
 * `target` is a file, or `FILE?offset=N` for a filesystem inside a disk image
 * (e2fsprogs' unix I/O manager reads that form). Whether its journal needs
 * recovery: ext4 sets needs_recovery while mounted and clears it on a clean unmount.
 */
export async function extJournalNeedsRecovery(target: string, signal?: AbortSignal): Promise<boolean> {
  const header = await runChecker('dumpe2fs', ['-h', target], {
    ...E2FSPROGS,
    ...(signal ? { signal } : {}),
  });
  const features = /^Filesystem features:\s+(.*)$/m.exec(header.output)?.[1]?.split(/\s+/) ?? [];
  return features.includes('needs_recovery');
}

/**
 * e2fsck replays a journal, then opens the filesystem again: for a target
 * inside a disk image (`FILE?offset=N`) that second open loses the offset
 * (e2fsprogs 1.47: "Bad magic number in super-block while trying to
 * re-open"), after the replay was written, leaving only the superblock's
 * needs_recovery flag set. What e2fsck would have done next is clear it: so
 * does this, and the replay counts as done. Any other failure stands.
 */
async function reopenedAtOffset(
  target: string,
  replay: Awaited<ReturnType<typeof runChecker>>,
  options: Parameters<typeof runChecker>[2],
): Promise<Awaited<ReturnType<typeof runChecker>>> {
  if (
    !target.includes('?offset=') ||
    replay.aborted ||
    replay.exitCode === null ||
    replay.exitCode <= 1 ||
    !/Bad magic number in super-block while trying to re-open/.test(replay.output) ||
    /\? yes$/m.test(replay.output)
  ) {
    return replay;
  }
  const cleared = await runChecker('debugfs', ['-w', '-R', 'feature -needs_recovery', target], options);
  if (cleared.exitCode !== 0 || (await extJournalNeedsRecovery(target))) return replay;
  return {
    ...replay,
    exitCode: 1,
    output: `${replay.output}\n(the journal was replayed; e2fsck could not re-open the filesystem at its offset, so Haven cleared needs_recovery with debugfs)`,
  };
}

/**
 * Checks an ext2/3/4 filesystem the way the kernel would find it at mount.
 * `e2fsck -fn` alone skips journal recovery on a crashed filesystem and then
 * judges stale metadata; so when the journal needs recovery it is replayed
 * first (`e2fsck -E journal_only -p`), which WRITES to `target`: callers pass
 * a copy or an overlay. Preen, not `-y`: a journal that cannot simply be
 * replayed (its inode damaged) must fail the check, not be "repaired" by a
 * full `-y` run whose result the read-only check then calls clean. Clean means `e2fsck -fn` exits 0: ext4 leaves the
 * superblock's free counts stale by design, and e2fsck does not count those.
 */
export async function checkExtFilesystem(target: string, signal?: AbortSignal): Promise<ExtFilesystemCheck> {
  const options = { ...E2FSPROGS, ...(signal ? { signal } : {}) };
  const journalReplayed = await extJournalNeedsRecovery(target, signal);
  let replayOutput = '';
  if (journalReplayed) {
    const replay = await reopenedAtOffset(
      target,
      await runChecker('e2fsck', ['-E', 'journal_only', '-p', target], options),
      options,
    );
    // 0 nothing changed, 1 errors corrected (the journal replayed); more: the replay failed or
    // preen met what it may not fix by itself (UNEXPECTED INCONSISTENCY, exit 4).
    if (replay.aborted || replay.exitCode === null || replay.exitCode > 1 || /\? yes$/m.test(replay.output)) {
      return {
        clean: false,
        journalReplayed: false,
        replayFailed: !replay.aborted,
        exitCode: replay.exitCode,
        output: replay.output,
        outputTruncated: replay.outputTruncated,
        aborted: replay.aborted,
      };
    }
    replayOutput = replay.output;
  }
  const check = await runChecker('e2fsck', ['-fn', target], options);
  return {
    clean: check.exitCode === 0,
    journalReplayed,
    replayFailed: false,
    exitCode: check.exitCode,
    output: replayOutput === '' ? check.output : `${replayOutput}\n${check.output}`,
    outputTruncated: check.outputTruncated,
    aborted: check.aborted,
  };
}
