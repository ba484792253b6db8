import type { BlockHashes } from '../disk/index.ts';
import { HavenError } from '../errors/index.ts';
import type { DiskReplicationStatus } from './disk-replication-status.ts';
import { DiskReplicator } from './disk-replicator.ts';
import type { ReplicatedDisk } from './replicated-disk.ts';
import type { HostIdentity } from './replication-tls.ts';
import { type DiskSenderOptions, diskSenderOptions, type SenderOptions } from './sender-options.ts';
import type { ResyncKind, ResyncTicket } from './sender-state.ts';
import { TokenBucket } from './token-bucket.ts';

/**
 * The primary host's replication sender: replicates each added disk's journal
 * to its recovery host (initial copy, resyncs, then streaming), sharing one
 * bandwidth limit. Trims each journal only through what the receiver
 * acknowledged as durable.
 */
export class Sender {
  readonly identity: Pick<HostIdentity, 'keyPem' | 'certPem'>;
  readonly bucket: TokenBucket | null;
  readonly #options: DiskSenderOptions;
  readonly #disks = new Map<string, DiskReplicator>();

  constructor(options: SenderOptions) {
    this.identity = options.identity;
    const limit = options.bandwidthBytesPerSec ?? null;
    this.bucket = limit === null ? null : new TokenBucket(limit);
    this.#options = diskSenderOptions(options);
  }

  /** Changes the host's bandwidth limit (bytes/s) of a sender made with one. */
  setBandwidthLimit(bytesPerSecond: number): void {
    if (this.bucket === null) {
      throw new HavenError('operation_not_allowed', 'this sender was created without a bandwidth limit');
    }
    this.bucket.bytesPerSecond = bytesPerSecond;
  }

  addDisk(disk: ReplicatedDisk): void {
    if (this.#disks.has(disk.diskKey)) {
      throw new HavenError('conflict', `disk '${disk.diskKey}' is already replicated by this sender`, {
        diskKey: disk.diskKey,
      });
    }
    const replicator = new DiskReplicator(disk, this, this.#options);
    this.#disks.set(disk.diskKey, replicator);
    replicator.start();
  }

  async removeDisk(diskKey: string): Promise<void> {
    const replicator = this.#get(diskKey);
    this.#disks.delete(diskKey);
    await replicator.stop();
  }

  pause(diskKey: string): void {
    this.#get(diskKey).pause();
  }

  resume(diskKey: string): void {
    this.#get(diskKey).resume();
  }

  /**
   * Asks for a full resync (copy everything), a hash-compare resync (copy only
   * differing blocks) or a bitmap resync (copy the regions the journal's dirty
   * bitmap marked); the ticket says when it is done (see `status`).
   */
  requestResync(diskKey: string, kind: ResyncKind): ResyncTicket {
    return this.#get(diskKey).request(kind);
  }

  /**
   * The replica's block hashes of a disk (SHA-256 per block of `blockBytes`),
   * taken once the receiver acknowledged every record the disk's journal
   * holds; see DiskReplicator.replicaHashes.
   */
  replicaHashes(diskKey: string, options: { blockBytes: number; timeoutMs?: number }): Promise<BlockHashes> {
    return this.#get(diskKey).replicaHashes(options);
  }

  /** Cuts a disk's connection as a network failure would; it reconnects and resumes. */
  dropConnection(diskKey: string): void {
    this.#get(diskKey).dropConnection();
  }

  status(diskKey: string): DiskReplicationStatus {
    return this.#get(diskKey).status();
  }

  statuses(): DiskReplicationStatus[] {
    return [...this.#disks.values()].map((d) => d.status());
  }

  async close(): Promise<void> {
    const all = [...this.#disks.values()];
    this.#disks.clear();
    await Promise.all(all.map((d) => d.stop()));
  }

  #get(diskKey: string): DiskReplicator {
    const d = this.#disks.get(diskKey);
    if (d === undefined) {
      throw new HavenError('not_found', `disk '${diskKey}' is not replicated by this sender`, {
        kind: 'replicated disk',
        id: diskKey,
      });
    }
    return d;
  }
}
