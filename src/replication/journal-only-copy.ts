import { HavenError } from '../errors/index.ts';
import { BlockState } from '../nbd/index.ts';
import type { ReplicationSource } from './replicated-disk.ts';
import type { SyncPlan } from './sync-plan.ts';

/** What a copy reads: a source's image, or for a journal-only source the empty disk its journal starts from. */
export type CopySource = Pick<ReplicationSource, 'read' | 'blockStatus'>;

/** The disk a journal-only source's journal replays onto: all zeroes, sent as zero ranges. */
export function emptyDisk(size: number): CopySource {
  return {
    read: async (_offset, length) => Buffer.alloc(length),
    blockStatus: async (offset, length) => [
      { offset, length: Math.min(length, size - offset), flags: BlockState.HOLE | BlockState.ZERO },
    ],
  };
}

/**
 * Initial sync (and full resync) of a journal-only source (a mirror sink):
 * there is no image to copy; the replica is made an empty disk and the
 * journal from its first record (the mirror's background copy, then every
 * guest write) follows. Possible only while the journal still holds record 1.
 */
export function planJournalOnlyCopy(source: ReplicationSource, diskKey: string): SyncPlan {
  const { firstSeq, consumedSeq } = source.journal.status;
  if (firstSeq !== 1 || consumedSeq !== 0) {
    throw new HavenError(
      'conflict',
      `the journal-only source of '${diskKey}' no longer holds its records from 1 (first is ${firstSeq}): ` +
        'the replica cannot be rebuilt from it; the mirror must be armed again with a full copy into a new sink',
      { diskKey, firstSeq, allowed: ['re-arm'] },
    );
  }
  return { fromSeq: 1, regions: null, journalOnly: true };
}
