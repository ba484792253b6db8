import { type BlockHashes, blockCountOf, blockDigest, DIGEST_BYTES, type Region } from '../disk/index.ts';
import { HavenError } from '../errors/index.ts';
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

/** One range of the replica's block digests, as the receiver answered it. */
interface DigestRange {
  offset: number;
  length: number;
  digests: Buffer[];
}

/**
 * Asks the receiver for the block digests of the whole replica, range by
 * range, the next range asked for while the caller works on this one.
 * Throws `LinkClosed` when the connection goes.
 */
async function* replicaDigests(
  link: SenderLink,
  replies: HashReplies,
  sizeBytes: number,
  block: number,
  report: SyncReport | null,
): AsyncGenerator<DigestRange> {
  const rangeBytes = block * HASH_RANGE_BLOCKS;
  const request = async (offset: number): Promise<DigestRange> => {
    const length = Math.min(rangeBytes, sizeBytes - offset);
    const { reqId, reply } = replies.open();
    const m: HashRequestMessage = { reqId, offset, length, blockSize: block };
    await link.sendUnacknowledged(jsonFrame(FrameType.HASH_REQUEST, m), report);
    const got = await Promise.race([reply, link.conn.closed.then(() => null)]);
    link.check();
    return { offset, length, digests: got ?? [] };
  };
  let next = sizeBytes > 0 ? request(0) : null;
  while (next !== null) {
    const range = await next;
    const following = range.offset + rangeBytes;
    next = following < sizeBytes ? request(following) : null;
    yield range;
  }
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
  const regions: Region[] = [];
  let compared = 0;
  let differing = 0;
  for await (const { offset, length, digests: remote } of replicaDigests(
    link,
    replies,
    source.size,
    block,
    report,
  )) {
    const extents = await source.blockStatus(offset, length);
    for (let i = 0, at = offset; at < offset + length; i++, at += block) {
      const n = Math.min(block, offset + length - at);
      const hole = extents.some(
        (e) => (e.flags & BlockState.ZERO) !== 0 && e.offset <= at && at + n <= e.offset + e.length,
      );
      const local = hole ? zeroDigest(n) : blockDigest(await source.read(at, n));
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

const zeroDigests = new Map<number, Buffer>();

/** SHA-256 of `n` zero bytes (a hole), computed once per length. */
function zeroDigest(n: number): Buffer {
  let d = zeroDigests.get(n);
  if (d === undefined) {
    d = blockDigest(Buffer.alloc(n));
    zeroDigests.set(n, d);
  }
  return d;
}

export interface ReplicaHashFetch {
  link: SenderLink;
  replies: HashReplies;
  sizeBytes: number;
  blockBytes: number;
  /** The last record the replica holds (all acknowledged, none sent meanwhile): what the hashes include. */
  throughSeq: number;
  /** Bytes of the disk hashed so far. */
  onProgress: (hashedBytes: number) => void;
}

/** The replica's block hashes for the whole disk, in one buffer (see BlockHashes). */
export async function fetchReplicaHashes(fetch: ReplicaHashFetch): Promise<BlockHashes> {
  const { sizeBytes, blockBytes } = fetch;
  const blockCount = blockCountOf(sizeBytes, blockBytes);
  const digests = Buffer.alloc(blockCount * DIGEST_BYTES);
  for await (const range of replicaDigests(fetch.link, fetch.replies, sizeBytes, blockBytes, null)) {
    const expected = blockCountOf(range.length, blockBytes);
    if (range.digests.length !== expected || range.digests.some((d) => d.length !== DIGEST_BYTES)) {
      throw new HavenError(
        'internal',
        `the receiver answered ${range.digests.length} digests for the ${expected} blocks at ${range.offset}`,
        { offset: range.offset },
      );
    }
    const first = range.offset / blockBytes;
    range.digests.forEach((d, i) => {
      d.copy(digests, (first + i) * DIGEST_BYTES);
    });
    fetch.onProgress(range.offset + range.length);
  }
  return { blockBytes, sizeBytes, blockCount, digests, throughSeq: fetch.throughSeq };
}
