import type { ChecksumMode, JournalRecord, JournalStatus, ResyncPlan } from '../disk/index.ts';

/**
 * What the sender needs of a disk's write journal: read records from a
 * sequence on, trim through what the receiver holds durably, and hand the
 * regions of a finished resync back to the dirty bitmap. The disk's
 * `WriteJournal` satisfies it; unit tests use a fake.
 */
export interface JournalCursor {
  readonly status: Pick<JournalStatus, 'nextSeq' | 'writtenSeq' | 'consumedSeq' | 'firstSeq' | 'usedBytes'>;
  /** The journal overflowed into its dirty bitmap: a resync is due. */
  readonly resyncRequired: boolean;
  /**
   * Records from `fromSeq` up to those written when called. A call from where
   * the previous one stopped continues at its file position. `carry`: records
   * carry their journaled checksums unchecked (the receiver's store checks them).
   */
  records(fromSeq: number, options?: { checksums?: ChecksumMode }): AsyncIterable<JournalRecord>;
  /** Calls `listener` whenever records become readable or a resync becomes due; returns its removal. */
  onRecords(listener: () => void): () => void;
  /** The receiver holds every record through `seq` durably. */
  trimThrough(seq: number): Promise<void>;
  /** The regions of `plan` were copied to the replica: clear them from the bitmap. */
  completeResync(plan: ResyncPlan): Promise<void>;
}

/** Estimated journal bytes of a record besides its data (for batch sizes and bytes pending). */
const RECORD_OVERHEAD_BYTES = 48;

export function journalBytes(record: JournalRecord): number {
  return RECORD_OVERHEAD_BYTES + (record.data?.length ?? 0);
}
