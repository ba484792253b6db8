import type { Region } from '../disk/index.ts';
import type { ReplicationSource } from './replicated-disk.ts';

/** What a sync copies and where journal streaming resumes after it. */
export interface SyncPlan {
  /** Journal records from here on are streamed after the copy. */
  fromSeq: number;
  /** Regions to copy; null: the whole disk. */
  regions: Region[] | null;
  /**
   * A journal-only source: the copy is an empty disk (zero ranges), and the
   * replica's points may start at the journal's first flush record.
   */
  journalOnly?: true;
  /** Runs once the receiver acknowledged the completed copy. */
  onCopied?: () => Promise<void>;
}

/**
 * Flushes the source for a copy of the image as it is now; returns the
 * sequence streaming resumes from: every write with a lower sequence is in the
 * image once flush returns.
 */
export async function flushForCopy(source: ReplicationSource): Promise<number> {
  const fromSeq = source.journal.status.nextSeq;
  await source.flush();
  return fromSeq;
}
