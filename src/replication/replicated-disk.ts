import type { ResyncPlan } from '../disk/index.ts';
import type { BlockExtent } from '../nbd/index.ts';
import type { JournalCursor } from './journal-cursor.ts';

/**
 * What the sender reads on the primary host: the disk service's journaled
 * backend satisfies it. The sender reads the image directly (not through NBD):
 * it runs in the same host agent as the disk service, so this avoids a second
 * copy through a socket, and `flush`/`beginResync` give it the ordering
 * guarantees a copy needs (writes in flight have reached the image).
 */
export interface ReplicationSource {
  readonly size: number;
  /**
   * A journal-only sink (QEMU's mirror target): no image to read. The journal
   * from record 1 is the whole disk; its flush records appear only once the
   * mirror is ready, so each is a consistent point. Its dirty regions after an
   * overflow must be read from the VM's disk through QEMU, not by the sender.
   */
  readonly journalOnly?: boolean;
  readonly journal: JournalCursor;
  read(offset: number, length: number): Promise<Buffer>;
  blockStatus(offset: number, length: number): Promise<BlockExtent[]>;
  flush(): Promise<void>;
  beginResync(): Promise<ResyncPlan>;
}

export interface ReceiverAddress {
  host: string;
  port: number;
  /** SHA-256 fingerprint of the receiver's certificate (from the vault). */
  fingerprint: string;
}

export interface ReplicatedDisk {
  /** `<machineId>/<diskId>`: names the replica at the receiver. */
  diskKey: string;
  source: ReplicationSource;
  receiver: ReceiverAddress;
  /** Small file the sender keeps for this disk (sync progress); beside the journal is a good place. */
  statePath: string;
}
