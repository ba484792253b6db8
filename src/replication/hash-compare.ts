import { createHash } from 'node:crypto';
import type { Region } from '../disk/index.ts';
import { BlockState } from '../nbd/index.ts';
import type { ReplicationSource } from './replicated-disk.ts';
import type { SenderLink } from './sender-link.ts';
import { flushForCopy, type SyncPlan } from './sync-plan.ts';
import type { SyncReport } from './sync-report.ts';
import { FrameType, type HashRequestMessage, jsonFrame } from './wire-protocol.ts';

/** Blocks per HASH_REQUEST; the next range is asked for while this one is hashed. */
const HASH_RANGE_BLOCKS = 1024;
/** Share of sync progress the comparison takes; copying the differing blocks takes the rest. */
const COMPARE_PROGRESS_SHARE = 0.5;

/** The receiver's replies to hash requests, by request id; ids keep counting over reconnects. */
export class HashReplies {
  #waiters = new Map<number, (digests: Buffer[]) => void>();
  #nextReqId = 1;

  open(): { reqId: number; reply: Promise<Buffer[]> } {
    const reqId = this.#nextReqId++;
    const reply = new Promise<Buffer[]>((resolve) => this.#waiters.set(reqId, resolve));
    return { reqId, reply };
  }

  deliver(reqId: number, digests: Buffer[]): void {
    this.#waiters.get(reqId)?.(digests);
    this.#waiters.delete(reqId);
  }

  /** The connection is gone: no reply will come. */
  clear(): void {
    this.#waiters.clear();
  }
}

export interface HashCompare {
  link: SenderLink;
  source: ReplicationSource;
  replies: HashReplies;
  blockBytes: number;
  report: SyncReport;
  onProgress: (fraction: number) => void;
}

/** Resync that copies only the blocks whose hashes differ between source and replica. */
export async function planHashCompare(compare: HashCompare): Promise<SyncPlan> {
  const fromSeq = await flushForCopy(compare.source);
  return { fromSeq, regions: await compareHashes(compare) };
}

/**
 * Asks the receiver for block hashes of the whole disk and compares them with
 * the source's; returns the differing blocks as merged regions.
 */
async function compareHashes({
  link,
  source,
  replies,
  blockBytes: block,
  report,
  onProgress,
}: HashCompare): Promise<Region[]> {
  const rangeBytes = block * HASH_RANGE_BLOCKS;
  const zeroDigests = new Map<number, Buffer>();
  const zeroDigest = (n: number): Buffer => {
    let d = zeroDigests.get(n);
    if (d === undefined) {
      d = createHash('sha256').update(Buffer.alloc(n)).digest();
      zeroDigests.set(n, d);
    }
    return d;
  };
  const request = async (offset: number, length: number): Promise<Buffer[]> => {
    const { reqId, reply } = replies.open();
    const m: HashRequestMessage = { reqId, offset, length, blockSize: block };
    await link.sendUnacknowledged(jsonFrame(FrameType.HASH_REQUEST, m), report);
    const got = await Promise.race([reply, link.conn.closed.then(() => null)]);
    link.check();
    return got ?? [];
  };
  const regions: Region[] = [];
  let compared = 0;
  let differing = 0;
  let nextReply = source.size > 0 ? request(0, Math.min(rangeBytes, source.size)) : null;
  for (let offset = 0; offset < source.size; offset += rangeBytes) {
    const length = Math.min(rangeBytes, source.size - offset);
    const remote = await (nextReply as Promise<Buffer[]>);
    // Ask for the next range while hashing this one.
    const following = offset + rangeBytes;
    nextReply =
      following < source.size ? request(following, Math.min(rangeBytes, source.size - following)) : null;
    const extents = await source.blockStatus(offset, length);
    for (let i = 0, at = offset; at < offset + length; i++, at += block) {
      const n = Math.min(block, offset + length - at);
      const hole = extents.some(
        (e) => (e.flags & BlockState.ZERO) !== 0 && e.offset <= at && at + n <= e.offset + e.length,
      );
      const local = hole
        ? zeroDigest(n)
        : createHash('sha256')
            .update(await source.read(at, n))
            .digest();
      compared++;
      const theirs = remote[i];
      if (theirs === undefined || !theirs.equals(local)) {
        differing++;
        const last = regions.at(-1);
        if (last !== undefined && last.offset + last.length === at) last.length += n;
        else regions.push({ offset: at, length: n });
      }
      report.comparedBytes = at + n;
      onProgress((COMPARE_PROGRESS_SHARE * (at + n)) / source.size);
    }
  }
  report.blocksCompared = compared;
  report.blocksDiffering = differing;
  return regions;
}
