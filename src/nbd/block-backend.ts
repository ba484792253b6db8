/**
 * What the NBD server serves: one export's storage. The disk service wraps a
 * raw image in a backend that journals every write; the replica store serves
 * point-in-time views through the same interface. Offsets and lengths are
 * JavaScript numbers: safe up to 2^53 bytes (8 PiB), which the server checks
 * before calling in (NBD carries 64-bit values).
 */
import type { BlockExtent } from '../storage/block-extent.ts';

export type { BlockExtent };

export interface WriteOptions {
  /** Force Unit Access: durable before the reply. */
  fua: boolean;
}

export interface BlockBackend {
  readonly size: number;
  readonly readOnly: boolean;
  /** Whether TRIM / WRITE_ZEROES / BLOCK_STATUS are meaningful for this backend. */
  readonly canTrim: boolean;
  readonly canWriteZeroes: boolean;

  /**
   * `into`, when given, is a buffer of exactly `length` bytes that the backend
   * may read into and return (the server's, reused once the reply is sent: the
   * backend keeps no reference to it); a backend may ignore it and return its
   * own buffer.
   */
  read(offset: number, length: number, into?: Buffer): Promise<Buffer>;
  /** `data` is the server's until the returned promise settles (it reuses the buffer then): copy what must outlive that. */
  write(offset: number, data: Buffer, options: WriteOptions): Promise<void>;
  /** Makes every write acknowledged so far durable. */
  flush(): Promise<void>;
  trim(offset: number, length: number, options: WriteOptions): Promise<void>;
  writeZeroes(offset: number, length: number, options: WriteOptions & { mayTrim: boolean }): Promise<void>;
  /** Allocation status from `offset`, covering at most `length` bytes (at least one extent). */
  blockStatus(offset: number, length: number): Promise<BlockExtent[]>;
  close(): Promise<void>;
}
