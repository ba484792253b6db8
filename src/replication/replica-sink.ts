import type { JournalRecord } from '../disk/index.ts';

/** A sync as its sender starts it: null regions means the whole disk (initial or full resync). */
export interface SyncStart {
  id: string;
  kind: 'initial' | 'resync' | 'full-resync';
  fromSeq: number;
  regions: { offset: number; length: number }[] | null;
}

/**
 * Where the replication receiver puts what the sender ships: the recovery
 * host's replica store implements it. One `diskKey` per protected disk
 * (e.g. `<machineId>/<diskId>`). Everything but copied data resolves only
 * once durable: the receiver acknowledges to the sender after these promises,
 * and the sender trims its journal after the acknowledgement.
 */
export interface ReplicaSink {
  /** Creates the replica of a disk (idempotent for the same size). */
  ensureDisk(diskKey: string, sizeBytes: number): Promise<void>;

  /**
   * The highest journal sequence durably stored for this disk, or -1: the
   * sender resumes after it, so nothing is lost or applied twice.
   */
  durableSequence(diskKey: string): Promise<number>;

  /**
   * Appends journal records (write, trim, zero, flush, marker) in sequence
   * order. Records at or below `durableSequence` are ignored (a resent batch
   * after a reconnect). A gap (first seq > durable + 1) is refused unless a
   * sync declared it. Resolves with the new durable sequence. The receiver
   * calls it again before an earlier call has resolved: records are stored in
   * call order.
   */
  append(diskKey: string, records: JournalRecord[]): Promise<number>;

  /**
   * The sink checks the checksum a record carries (`JournalRecord.crc`, as
   * journaled on the source) before it stores anything of an append, and
   * refuses the append if one does not match: the sender may then skip the
   * check as it reads its journal. Absent: records come checked.
   */
  readonly checksRecordChecksums?: boolean;

  /**
   * Initial replication and resync: the sender copies disk contents while the
   * machine runs. `beginSync` says the copy starts and from which journal
   * sequence the writes made meanwhile will follow (`fromSeq`): copied blocks
   * go to `writeSyncData`, then journal records from `fromSeq` are appended
   * as usual. `regions` null means the whole disk (initial or full resync);
   * otherwise only those regions are rewritten (bitmap resync). No recovery
   * point exists for the span of a sync: the first one after `completeSync`
   * is the first flush whose sequence is ≥ the `throughSeq` given there.
   */
  beginSync(diskKey: string, sync: SyncStart): Promise<void>;
  /**
   * Copied bytes (zero/hole ranges may be sent as `data: null` + length).
   * Need not be durable on return: `completeSync` is, and a sync interrupted
   * before it is redone from the start under a new id. A copy writes each byte
   * once, so the receiver may have several calls in flight.
   */
  writeSyncData(
    diskKey: string,
    syncId: string,
    offset: number,
    data: Buffer | null,
    length: number,
  ): Promise<void>;
  /** The copy is complete; the replica becomes consistent once records through `throughSeq` are applied. */
  completeSync(diskKey: string, syncId: string, throughSeq: number): Promise<void>;

  /**
   * Optional: the replica's current contents (everything appended and synced so
   * far). The receiver hashes them for a hash-compare resync; without it such
   * a resync falls back to a full resync.
   */
  read?(diskKey: string, offset: number, length: number): Promise<Buffer>;
}
