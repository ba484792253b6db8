import type { Region } from '../disk/index.ts';
import { HavenError } from '../errors/index.ts';
import { BlockState } from '../nbd/index.ts';
import type { CopySource } from './journal-only-copy.ts';
import type { SenderLink } from './sender-link.ts';
import type { SyncReport } from './sync-report.ts';
import { type CompressionProbe, encodeFrame, FrameType, syncDataPayload } from './wire-protocol.ts';

/** A zero range costs one small frame whatever its length; this keeps its length field in range. */
const MAX_ZERO_RANGE_BYTES = 1 << 30;
/** Largest range asked of block status at once. */
const MAX_BLOCK_STATUS_BYTES = 1 << 30;
/**
 * Data read and compressed ahead of the frame being sent, in frames and bytes:
 * enough concurrent reads for small scattered regions (a bitmap resync of
 * 64 KiB blocks), bounded memory for large chunks.
 */
const READ_AHEAD_FRAMES = 64;
const READ_AHEAD_BYTES = 16 << 20;
/** Frames that are ready go out together, up to about this many bytes per write. */
const SEND_BATCH_BYTES = 4 << 20;
/** Zero detection compares against this. */
const ZERO = Buffer.alloc(1 << 16);

export function isZero(buf: Buffer): boolean {
  const zero = ZERO;
  for (let at = 0; at < buf.length; at += zero.length) {
    const part = buf.subarray(at, at + zero.length);
    if (!part.equals(zero.subarray(0, part.length))) return false;
  }
  return true;
}

export interface RegionCopy {
  link: SenderLink;
  source: CopySource;
  /** Names the disk in errors. */
  diskKey: string;
  chunkBytes: number;
  probe: CompressionProbe;
  report: SyncReport;
  onProgress: (fraction: number) => void;
}

/**
 * Sends the regions' contents as SYNC_DATA frames: holes and zero blocks as
 * zero ranges, data chunks compressed when it pays.
 */
export async function copyRegions(regions: readonly Region[], copy: RegionCopy): Promise<void> {
  const { link, source, report, probe } = copy;
  const total = regions.reduce((n, r) => n + r.length, 0);
  report.regionBytes = total;
  report.copiedBytes = 0;
  let done = 0;
  interface Pending {
    parts: Promise<Buffer[]>;
    /** The frame, once read and encoded. */
    frame: Buffer[] | null;
    length: number;
    readBytes: number;
  }
  const pending: Pending[] = [];
  let pendingBytes = 0;
  // Frames read ahead would all try compression before the first try tells whether the data compresses:
  // until one has shown that it does, one try at a time.
  let trying = 0;
  let compresses = false;
  /** Sends the oldest frame and those after it that are ready too, in one write. */
  const flushOne = async (): Promise<void> => {
    const first = pending[0] as Pending;
    first.frame = await first.parts;
    let take = 0;
    let bytes = 0;
    while (take < pending.length && bytes < SEND_BATCH_BYTES) {
      const frame = pending[take]?.frame;
      if (frame === null || frame === undefined) break;
      bytes += frame.reduce((n, b) => n + b.length, 0);
      take++;
    }
    const items = pending.splice(0, take);
    await link.sendAll(
      items.map((i) => i.frame as Buffer[]),
      report,
    );
    for (const item of items) {
      pendingBytes -= item.readBytes;
      done += item.length;
    }
    report.copiedBytes = done;
    copy.onProgress(total === 0 ? 1 : done / total);
  };
  const queue = async (offset: number, length: number, zero: boolean): Promise<void> => {
    const parts = (async () => {
      let data: Buffer | null = null;
      if (!zero) {
        data = await source.read(offset, length);
        if (isZero(data)) data = null;
        else report.dataBytes += length;
      }
      const tryLevel = data === null || (trying > 0 && !compresses) ? null : probe.next(length);
      if (tryLevel !== null) trying++;
      let result: Awaited<ReturnType<typeof syncDataPayload>>;
      try {
        result = await syncDataPayload(offset, data, length, tryLevel);
      } finally {
        if (tryLevel !== null) trying--;
      }
      probe.record(tryLevel !== null, result.compressed);
      if (tryLevel !== null) compresses = result.compressed;
      return encodeFrame(FrameType.SYNC_DATA, result.payload);
    })();
    const readBytes = zero ? 0 : length;
    const item: Pending = { parts, frame: null, length, readBytes };
    // Rejections surface when the frame is sent; until then nobody awaits it.
    parts.then(
      (frame) => {
        item.frame = frame;
      },
      () => {},
    );
    pending.push(item);
    pendingBytes += readBytes;
    while (pending.length >= READ_AHEAD_FRAMES || pendingBytes >= READ_AHEAD_BYTES) await flushOne();
  };
  for (const region of regions) {
    const end = region.offset + region.length;
    let pos = region.offset;
    while (pos < end) {
      link.check();
      const extents = await source.blockStatus(pos, Math.min(end - pos, MAX_BLOCK_STATUS_BYTES));
      const before = pos;
      for (const ext of extents) {
        const a = Math.max(pos, ext.offset);
        const b = Math.min(end, ext.offset + ext.length);
        if (b <= a) continue;
        const zero = (ext.flags & BlockState.ZERO) !== 0;
        const step = zero ? MAX_ZERO_RANGE_BYTES : copy.chunkBytes;
        for (let at = a; at < b; at += step) await queue(at, Math.min(step, b - at), zero);
        pos = b;
      }
      if (pos === before) {
        throw new HavenError('internal', `block status of '${copy.diskKey}' made no progress at ${pos}`);
      }
    }
  }
  while (pending.length > 0) await flushOne();
}
