import type { HostIdentity } from './replication-tls.ts';

export interface SenderOptions {
  identity: Pick<HostIdentity, 'keyPem' | 'certPem'>;
  /** Host-wide bandwidth limit in bytes/s over all disks; null or absent: unlimited. */
  bandwidthBytesPerSec?: number | null;
  /** Bytes sent but not yet acknowledged, per disk (default 32 MiB). */
  windowBytes?: number;
  /** Target size of a record batch before compression (default 1 MiB). */
  batchBytes?: number;
  /**
   * Longest wait for something to do when nothing wakes the sender (default
   * 1 s): the journal wakes it when it grows, acks and requests do too, so
   * this is only a safety net.
   */
  pollMs?: number;
  /** Size of sync data frames (default 1 MiB). */
  syncChunkBytes?: number;
  /** Block size of hash-compare resync (default 64 KiB). */
  hashBlockBytes?: number;
  /** zstd level (default 1); null sends everything uncompressed. */
  compressionLevel?: number | null;
  backoffMinMs?: number;
  backoffMaxMs?: number;
}

/** The per-disk options with their defaults filled in. */
export type DiskSenderOptions = Required<Omit<SenderOptions, 'identity' | 'bandwidthBytesPerSec'>>;

export const DEFAULT_SENDER_OPTIONS: Readonly<DiskSenderOptions> = {
  windowBytes: 32 << 20,
  batchBytes: 1 << 20,
  pollMs: 1000,
  syncChunkBytes: 1 << 20,
  hashBlockBytes: 64 << 10,
  compressionLevel: 1,
  backoffMinMs: 100,
  backoffMaxMs: 10_000,
};

export function diskSenderOptions(options: SenderOptions): DiskSenderOptions {
  const d = DEFAULT_SENDER_OPTIONS;
  return {
    windowBytes: options.windowBytes ?? d.windowBytes,
    batchBytes: options.batchBytes ?? d.batchBytes,
    pollMs: options.pollMs ?? d.pollMs,
    syncChunkBytes: options.syncChunkBytes ?? d.syncChunkBytes,
    hashBlockBytes: options.hashBlockBytes ?? d.hashBlockBytes,
    // null is a choice (no compression), only absence takes the default.
    compressionLevel: options.compressionLevel === undefined ? d.compressionLevel : options.compressionLevel,
    backoffMinMs: options.backoffMinMs ?? d.backoffMinMs,
    backoffMaxMs: options.backoffMaxMs ?? d.backoffMaxMs,
  };
}
