/** Fakes for unit tests of the sender's parts: a journal cursor and a link whose frames are kept. */
import type { JournalRecord, ResyncPlan } from '../disk/index.ts';
import { type BlockExtent, BlockState } from '../nbd/index.ts';
import type { FramedConnection } from '../replication/framed-connection.ts';
import type { JournalCursor } from '../replication/journal-cursor.ts';
import type { ReplicationSource } from '../replication/replicated-disk.ts';
import { SendWindow } from '../replication/send-window.ts';
import { SenderLink } from '../replication/sender-link.ts';
import { Signal } from '../replication/signal.ts';
import { type Frame, FrameReader } from '../replication/wire-protocol.ts';

export class FakeCursor implements JournalCursor {
  status = { nextSeq: 10, writtenSeq: 9, consumedSeq: -1, firstSeq: 0, usedBytes: 1000 };
  resyncRequired = false;
  /** Trims and completed resyncs, in order. */
  readonly events: string[] = [];

  async *records(_fromSeq: number): AsyncIterable<JournalRecord> {}

  onRecords(_listener: () => void): () => void {
    return () => {};
  }

  async trimThrough(seq: number): Promise<void> {
    this.events.push(`trim ${seq}`);
    this.status.consumedSeq = seq;
  }

  async completeResync(plan: ResyncPlan): Promise<void> {
    this.events.push(`complete resync ${plan.id}`);
  }
}

/** A link over no socket: sent frames are decoded into `frames`. */
export function fakeLink(cursor: JournalCursor = new FakeCursor()): { link: SenderLink; frames: Frame[] } {
  const frames: Frame[] = [];
  const reader = new FrameReader();
  const conn = {
    isClosed: false,
    closed: new Promise<Error | null>(() => {}),
    send: async (parts: Buffer[]) => {
      for (const part of parts) frames.push(...reader.push(part));
    },
  } as unknown as FramedConnection;
  const window = new SendWindow({
    cursor,
    windowBytes: 1 << 30,
    signal: new Signal(),
    onTrimError: () => {},
  });
  const link = new SenderLink({
    conn,
    window,
    bucket: null,
    counters: { wireBytes: 0, batchesCompressed: 0, batchesUncompressed: 0 },
    halted: () => false,
    lastError: () => null,
  });
  return { link, frames };
}

/** A source disk in memory; block status reports `zeroRanges` as reading zeroes, the rest as data. */
export function fakeSource(
  image: Buffer,
  options: { cursor?: FakeCursor; zeroRanges?: BlockExtent[]; resync?: ResyncPlan } = {},
): ReplicationSource & { journal: FakeCursor; flushes: number } {
  const zeroRanges = options.zeroRanges ?? [];
  const source = {
    size: image.length,
    journal: options.cursor ?? new FakeCursor(),
    flushes: 0,
    read: async (offset: number, length: number) => Buffer.from(image.subarray(offset, offset + length)),
    blockStatus: async (offset: number, length: number): Promise<BlockExtent[]> => {
      const zero = zeroRanges.find((z) => z.offset <= offset && offset < z.offset + z.length);
      if (zero !== undefined) {
        const end = Math.min(offset + length, zero.offset + zero.length);
        return [{ offset, length: end - offset, flags: BlockState.ZERO }];
      }
      const nextZero = zeroRanges.filter((z) => z.offset > offset).map((z) => z.offset);
      const end = Math.min(offset + length, ...nextZero);
      return [{ offset, length: end - offset, flags: 0 }];
    },
    flush: async () => {
      source.flushes++;
    },
    beginResync: async () => {
      if (options.resync === undefined) throw new Error('no resync planned');
      return options.resync;
    },
  };
  return source;
}
