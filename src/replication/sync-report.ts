import type { SyncKind } from './sender-state.ts';

export interface SyncReport {
  kind: SyncKind;
  diskBytes: number;
  /** Bytes the copy covered: the whole disk, the dirty regions, or the differing blocks. */
  regionBytes: number;
  /** Bytes of those regions copied so far (sent; acknowledged once `completed`). */
  copiedBytes: number;
  /** Hash compare: bytes of the disk compared so far; null for the other kinds. */
  comparedBytes: number | null;
  /** Bytes of data read and sent (holes and zero blocks excluded), before compression. */
  dataBytes: number;
  /** Bytes put on the wire for this sync (frames, after compression, hash requests included). */
  wireBytes: number;
  blocksCompared: number | null;
  blocksDiffering: number | null;
  startedAtMs: number;
  durationMs: number | null;
  completed: boolean;
}

export function newSyncReport(kind: SyncKind, diskBytes: number): SyncReport {
  return {
    kind,
    diskBytes,
    regionBytes: 0,
    copiedBytes: 0,
    comparedBytes: kind === 'hash' ? 0 : null,
    dataBytes: 0,
    wireBytes: 0,
    blocksCompared: null,
    blocksDiffering: null,
    startedAtMs: Date.now(),
    durationMs: null,
    completed: false,
  };
}
