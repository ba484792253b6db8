import type { ResyncTicket } from './sender-state.ts';
import type { SyncReport } from './sync-report.ts';

export type ReplicationState = 'connecting' | 'initial-sync' | 'resync' | 'streaming' | 'paused' | 'error';

export interface DiskReplicationStatus {
  diskKey: string;
  state: ReplicationState;
  /** 0..1 while a sync copies, else null. */
  syncProgress: number | null;
  /** Journal bytes not yet acknowledged by the receiver. */
  bytesPending: number;
  /**
   * A copy the sender will run before (or instead of) streaming the journal:
   * never synced or an interrupted initial copy ('initial'), an interrupted or
   * requested full or hash resync ('resync'). Known from the moment the
   * replicator starts, so a sender still connecting is not taken for one with
   * nothing to send.
   */
  syncDue: 'initial' | 'resync' | null;
  /** The journal overflowed into its dirty bitmap: a resync is due. */
  resyncRequired: boolean;
  /** Journal bytes acknowledged per second, over the last few seconds. */
  throughputBytesPerSec: number;
  /** The receiver's durable sequence (-1: nothing yet). */
  lastAckedSeq: number;
  /** Journal time of the newest acknowledged record: RPO = now − this. Null until the replica is consistent. */
  lastAckedRecordTimeMs: number | null;
  wireBytesSent: number;
  /** Record batches sent compressed / uncompressed (compression skipped when it does not pay). */
  batchesCompressed: number;
  batchesUncompressed: number;
  connects: number;
  lastError: string | null;
  lastSync: SyncReport | null;
  /** While the replica's block hashes are fetched (`replicaHashes`): bytes of the disk hashed so far. */
  replicaHashes: { blockBytes: number; hashedBytes: number; diskBytes: number } | null;
  /** Resync requests of this sender: the last asked for and the last answered (see ResyncTicket). */
  resyncRequests: { senderId: ResyncTicket['senderId']; last: number; done: number };
}
