import { createHash, randomUUID } from 'node:crypto';
import type { JournalRecord, ResyncPlan, WriteJournal } from '../disk/index.ts';
import { HavenError } from '../errors/index.ts';
import type { BlockExtent } from '../nbd/index.ts';
import { FramedConnection } from './framed-connection.ts';
import { connectPinned, type HostIdentity } from './replication-tls.ts';
import { readSenderState, type SenderDiskState, type SyncKind, writeSenderState } from './sender-state.ts';
import { TokenBucket } from './token-bucket.ts';
import {
  type AckMessage,
  CompressionProbe,
  type ErrorMessage,
  encodeFrame,
  encodeRecords,
  type Frame,
  FrameType,
  type HashRequestMessage,
  type HelloMessage,
  jsonFrame,
  PROTOCOL_VERSION,
  parseHashesPayload,
  parseJson,
  type ResumeMessage,
  recordsPayload,
  type SyncBeginMessage,
  syncDataPayload,
} from './wire-protocol.ts';

/**
 * What the sender reads on the primary host: the disk service's journaled
 * backend satisfies it. The sender reads the image directly (not through NBD):
 * it runs in the same host agent as the disk service, so this avoids a second
 * copy through a socket, and `flush`/`beginResync` give it the ordering
 * guarantees a copy needs (writes in flight have reached the image).
 */
export interface ReplicationSource {
  readonly size: number;
  readonly journal: WriteJournal;
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

export interface SenderOptions {
  identity: Pick<HostIdentity, 'keyPem' | 'certPem'>;
  /** Host-wide bandwidth limit in bytes/s over all disks; null or absent: unlimited. */
  bandwidthBytesPerSec?: number | null;
  /** Bytes sent but not yet acknowledged, per disk (default 32 MiB). */
  windowBytes?: number;
  /** Target size of a record batch before compression (default 1 MiB). */
  batchBytes?: number;
  /** How often the journal is checked for new records; records written meanwhile form one batch (default 5 ms). */
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

export type ReplicationState = 'connecting' | 'initial-sync' | 'resync' | 'streaming' | 'paused' | 'error';

export interface SyncReport {
  kind: SyncKind;
  diskBytes: number;
  /** Bytes the copy covered: the whole disk, the dirty regions, or the differing blocks. */
  regionBytes: number;
  /** Bytes of data read and sent (holes and zero blocks excluded), before compression. */
  dataBytes: number;
  /** Bytes put on the wire for this sync (frames, after compression, hash requests included). */
  wireBytes: number;
  blocksCompared: number | null;
  blocksDiffering: number | null;
  startedAtMs: number;
  durationMs: number | null;
  completed: boolean;
}

export interface DiskReplicationStatus {
  diskKey: string;
  state: ReplicationState;
  /** 0..1 while a sync copies, else null. */
  syncProgress: number | null;
  /** Journal bytes not yet acknowledged by the receiver. */
  bytesPending: number;
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
}

interface InFlight {
  bytes: number;
  lastSeq: number | null;
  lastTimeMs: number;
  recordBytes: number;
  onAck?: () => Promise<void>;
}

class Closed extends Error {}

type ResolvedOptions = Required<Omit<SenderOptions, 'identity' | 'bandwidthBytesPerSec'>>;

/** Wakes waiters on acks, requests and connection loss. */
class Signal {
  #waiters: (() => void)[] = [];
  notify(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

const RECORD_OVERHEAD = 48;
const ZERO_FRAME_MAX = 1 << 30;
const HASH_RANGE_BLOCKS = 1024;
const PIPELINE_DEPTH = 4;

function recordBytes(r: JournalRecord): number {
  return RECORD_OVERHEAD + (r.data?.length ?? 0);
}

function isZero(buf: Buffer): boolean {
  const zero = Buffer.alloc(Math.min(buf.length, 1 << 16));
  for (let at = 0; at < buf.length; at += zero.length) {
    const part = buf.subarray(at, at + zero.length);
    if (!part.equals(zero.subarray(0, part.length))) return false;
  }
  return true;
}

/** Replicates one disk over its own connection, reconnecting and resuming until stopped. */
class DiskReplicator {
  readonly disk: ReplicatedDisk;
  readonly #sender: Sender;
  readonly #o: ResolvedOptions;
  readonly #signal = new Signal();
  #conn: FramedConnection | null = null;
  #state: ReplicationState = 'connecting';
  #stopped = false;
  #paused = false;
  #requested: SyncKind | null = null;
  #hashUnsupported = false;
  #persisted: SenderDiskState | null = null;
  #running: Promise<void> = Promise.resolve();

  // Window of the current connection.
  #inflight: InFlight[] = [];
  #ackedFrames = 0;
  #windowUsed = 0;
  #hashWaiters = new Map<number, (digests: Buffer[]) => void>();
  #nextReqId = 1;

  // Progress as the receiver confirmed it.
  #ackedSeq = -1;
  #ackedTimeMs: number | null = null;
  #trimmed = -1;
  #trimChain: Promise<void> = Promise.resolve();
  /** Acknowledged batches still stored in the journal (for bytes pending). */
  #ackedStored: { lastSeq: number; bytes: number }[] = [];
  #throughput: { atMs: number; bytes: number }[] = [];

  #syncProgress: number | null = null;
  #lastSync: SyncReport | null = null;
  #lastError: string | null = null;
  #wireBytes = 0;
  #batchesCompressed = 0;
  #batchesUncompressed = 0;
  #connects = 0;
  readonly #recordProbe: CompressionProbe;
  readonly #syncProbe: CompressionProbe;

  constructor(disk: ReplicatedDisk, sender: Sender, options: ResolvedOptions) {
    this.disk = disk;
    this.#sender = sender;
    this.#o = options;
    this.#recordProbe = new CompressionProbe(options.compressionLevel);
    this.#syncProbe = new CompressionProbe(options.compressionLevel);
  }

  start(): void {
    this.#running = this.#loop();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#conn?.close(new Closed('replication stopped'));
    this.#signal.notify();
    await this.#running;
    await this.#trimChain;
  }

  pause(): void {
    this.#paused = true;
    this.#conn?.close(new Closed('replication paused'));
    this.#signal.notify();
  }

  resume(): void {
    this.#paused = false;
    this.#signal.notify();
  }

  request(kind: 'full' | 'hash'): void {
    this.#requested = kind;
    this.#signal.notify();
  }

  /** Cuts the current connection (tests and operators); the sender reconnects. */
  dropConnection(): void {
    this.#conn?.socket.destroy();
  }

  status(): DiskReplicationStatus {
    const journal = this.disk.source.journal.status;
    this.#ackedStored = this.#ackedStored.filter((b) => b.lastSeq >= journal.firstSeq);
    const storedAcked = this.#ackedStored.reduce((n, b) => n + b.bytes, 0);
    const now = Date.now();
    this.#throughput = this.#throughput.filter((t) => now - t.atMs <= 5000);
    const span =
      this.#throughput.length > 0 ? Math.max(1000, now - (this.#throughput[0]?.atMs ?? now)) : 1000;
    return {
      diskKey: this.disk.diskKey,
      state: this.#paused ? 'paused' : this.#state,
      syncProgress: this.#syncProgress,
      bytesPending: Math.max(0, journal.usedBytes - storedAcked),
      resyncRequired: journal.resyncRequired,
      throughputBytesPerSec: Math.round((this.#throughput.reduce((n, t) => n + t.bytes, 0) * 1000) / span),
      lastAckedSeq: this.#ackedSeq,
      lastAckedRecordTimeMs: this.#ackedTimeMs,
      wireBytesSent: this.#wireBytes,
      batchesCompressed: this.#batchesCompressed,
      batchesUncompressed: this.#batchesUncompressed,
      connects: this.#connects,
      lastError: this.#lastError,
      lastSync: this.#lastSync === null ? null : { ...this.#lastSync },
    };
  }

  async #loop(): Promise<void> {
    let backoff = this.#o.backoffMinMs;
    while (!this.#stopped) {
      if (this.#paused) {
        await this.#signal.wait(1000);
        continue;
      }
      let progressed = false;
      try {
        this.#state = 'connecting';
        const socket = await connectPinned(
          this.disk.receiver,
          this.#sender.identity,
          this.disk.receiver.fingerprint,
        );
        const conn = new FramedConnection(socket);
        this.#conn = conn;
        this.#connects++;
        void conn.closed.then(() => this.#signal.notify());
        const ackedBefore = this.#ackedSeq;
        try {
          await this.#session(conn);
        } finally {
          progressed = this.#ackedSeq > ackedBefore || (this.#state as ReplicationState) === 'streaming';
          conn.close();
          this.#resetWindow();
          this.#conn = null;
        }
      } catch (e) {
        if (!(e instanceof Closed) || !(this.#stopped || this.#paused)) {
          this.#lastError = e instanceof Error ? e.message : String(e);
        }
      }
      if (this.#stopped || this.#paused) continue;
      this.#state = 'error';
      this.#syncProgress = null;
      if (progressed) backoff = this.#o.backoffMinMs;
      await this.#signal.wait(backoff);
      backoff = Math.min(this.#o.backoffMaxMs, backoff * 2);
    }
  }

  #resetWindow(): void {
    this.#inflight = [];
    this.#ackedFrames = 0;
    this.#windowUsed = 0;
    this.#hashWaiters.clear();
    this.#signal.notify();
  }

  #check(conn: FramedConnection): void {
    if (this.#stopped || this.#paused) throw new Closed('replication stopped');
    if (conn.isClosed) throw new Closed(this.#lastError ?? 'replication connection closed');
  }

  async #session(conn: FramedConnection): Promise<void> {
    let resume: (m: ResumeMessage) => void = () => {};
    const resumed = new Promise<ResumeMessage>((resolve) => {
      resume = resolve;
    });
    conn.onFrame = (frame) => this.#onFrame(conn, frame, resume);
    const journal = this.disk.source.journal;
    const hello: HelloMessage = {
      v: PROTOCOL_VERSION,
      diskKey: this.disk.diskKey,
      sizeBytes: this.disk.source.size,
    };
    await conn.send(jsonFrame(FrameType.HELLO, hello));
    const timeout = setTimeout(() => conn.close(new Error('receiver did not answer HELLO')), 30_000);
    let durable: number;
    try {
      durable = (await Promise.race([resumed, conn.closed.then(() => null)]))?.durableSeq ?? Number.NaN;
    } finally {
      clearTimeout(timeout);
    }
    this.#check(conn);
    if (!Number.isSafeInteger(durable) || durable < -1) throw new Error('receiver sent a bad RESUME');
    const st = journal.status;
    if (durable >= st.nextSeq) {
      throw new HavenError(
        'conflict',
        `replica of '${this.disk.diskKey}' holds records through ${durable} but the journal only reaches ${st.nextSeq - 1}: ` +
          'the source lost acknowledged journal records; a full resync with a new journal is required',
        { diskKey: this.disk.diskKey, durableSeq: durable, nextSeq: st.nextSeq },
      );
    }
    this.#ackedSeq = durable;
    this.#scheduleTrim(durable);

    this.#persisted ??= await readSenderState(this.disk.statePath);
    let next = durable + 1;
    const interrupted = this.#persisted.sync?.kind ?? null;
    const kind: SyncKind | null =
      interrupted ??
      (!this.#persisted.synced
        ? 'initial'
        : this.#requested !== null
          ? this.#requested
          : next < journal.status.firstSeq && journal.status.writtenSeq >= next
            ? 'hash'
            : null);
    if (kind !== null) next = await this.#sync(conn, kind);
    await this.#stream(conn, next);
  }

  #onFrame(conn: FramedConnection, frame: Frame, resume: (m: ResumeMessage) => void): void {
    try {
      switch (frame.type) {
        case FrameType.RESUME:
          resume(parseJson<ResumeMessage>(frame));
          return;
        case FrameType.ACK:
          this.#onAck(parseJson<AckMessage>(frame));
          return;
        case FrameType.HASHES: {
          const { reqId, digests } = parseHashesPayload(frame.payload);
          this.#hashWaiters.get(reqId)?.(digests);
          this.#hashWaiters.delete(reqId);
          return;
        }
        case FrameType.ERROR: {
          const m = parseJson<ErrorMessage>(frame);
          this.#lastError = `receiver: ${m.message}`;
          if (m.code === 'not_available') this.#hashUnsupported = true;
          conn.close(new Error(this.#lastError));
          return;
        }
        default:
          throw new Error(`unexpected frame type ${frame.type} from the receiver`);
      }
    } catch (e) {
      this.#lastError = (e as Error).message;
      conn.close(e as Error);
    }
  }

  #onAck(ack: AckMessage): void {
    const now = Date.now();
    const callbacks: (() => Promise<void>)[] = [];
    while (this.#ackedFrames < ack.frames && this.#inflight.length > 0) {
      const entry = this.#inflight.shift() as InFlight;
      this.#ackedFrames++;
      this.#windowUsed -= entry.bytes;
      if (entry.lastSeq !== null) {
        this.#ackedStored.push({ lastSeq: entry.lastSeq, bytes: entry.recordBytes });
        this.#throughput.push({ atMs: now, bytes: entry.recordBytes });
        if (entry.lastSeq <= ack.durableSeq) this.#ackedTimeMs = entry.lastTimeMs;
      }
      if (entry.onAck) callbacks.push(entry.onAck);
    }
    if (ack.durableSeq > this.#ackedSeq) this.#ackedSeq = ack.durableSeq;
    // Acknowledged sync steps (state file, bitmap clearing) happen before trimming past them.
    this.#trimChain = this.#trimChain.then(async () => {
      for (const cb of callbacks) await cb();
    });
    this.#scheduleTrim(ack.durableSeq);
    this.#signal.notify();
  }

  /** Trims the journal through what the receiver holds durably (never further than what was written). */
  #scheduleTrim(durable: number): void {
    const journal = this.disk.source.journal;
    this.#trimChain = this.#trimChain
      .then(async () => {
        const seq = Math.min(durable, journal.status.writtenSeq);
        if (seq > this.#trimmed && seq > journal.status.consumedSeq) {
          await journal.trimThrough(seq);
        }
        this.#trimmed = Math.max(this.#trimmed, seq);
      })
      .catch((e) => {
        this.#lastError = `journal trim failed: ${(e as Error).message}`;
      });
  }

  /** Sends a frame the window counts: waits for window space and bandwidth first. */
  async #sendCounted(
    conn: FramedConnection,
    parts: Buffer[],
    entry: Omit<InFlight, 'bytes'>,
    sync: SyncReport | null = null,
  ): Promise<void> {
    const bytes = parts.reduce((n, p) => n + p.length, 0);
    while (this.#windowUsed > 0 && this.#windowUsed + bytes > this.#o.windowBytes) {
      this.#check(conn);
      await this.#signal.wait(1000);
    }
    await this.#sendRaw(conn, parts, bytes, sync);
    this.#inflight.push({ ...entry, bytes });
    this.#windowUsed += bytes;
  }

  async #sendRaw(
    conn: FramedConnection,
    parts: Buffer[],
    bytes: number,
    sync: SyncReport | null,
  ): Promise<void> {
    this.#check(conn);
    await this.#sender.bucket?.take(bytes);
    this.#check(conn);
    await conn.send(parts);
    this.#wireBytes += bytes;
    if (sync !== null) sync.wireBytes += bytes;
  }

  /** Waits until the receiver acknowledged everything sent on this connection. */
  async #drained(conn: FramedConnection): Promise<void> {
    while (this.#inflight.length > 0) {
      this.#check(conn);
      await this.#signal.wait(1000);
    }
    await this.#trimChain;
  }

  async #sendBatch(conn: FramedConnection, batch: JournalRecord[]): Promise<void> {
    const last = batch.at(-1) as JournalRecord;
    const level = this.#recordProbe.next();
    const { payload, compressed } = await recordsPayload(encodeRecords(batch), level);
    this.#recordProbe.record(level !== null, compressed);
    if (compressed) this.#batchesCompressed++;
    else this.#batchesUncompressed++;
    await this.#sendCounted(conn, encodeFrame(FrameType.RECORDS, payload), {
      lastSeq: last.seq,
      lastTimeMs: last.timeMs,
      recordBytes: batch.reduce((n, r) => n + recordBytes(r), 0),
    });
  }

  /** Streams journal records from `next` on, forever; runs resyncs when they become due. */
  async #stream(conn: FramedConnection, from: number): Promise<void> {
    const journal = this.disk.source.journal;
    let next = from;
    this.#state = 'streaming';
    for (;;) {
      this.#check(conn);
      if (this.#requested !== null) {
        await this.#drained(conn);
        next = await this.#sync(conn, this.#requested);
        this.#state = 'streaming';
        continue;
      }
      if (journal.status.writtenSeq >= next) {
        let batch: JournalRecord[] = [];
        let bytes = 0;
        for await (const record of journal.records(next)) {
          batch.push(record);
          bytes += recordBytes(record);
          next = record.seq + 1;
          if (bytes >= this.#o.batchBytes) {
            await this.#sendBatch(conn, batch);
            batch = [];
            bytes = 0;
          }
        }
        if (batch.length > 0) await this.#sendBatch(conn, batch);
        continue;
      }
      if (journal.resyncRequired && this.#inflight.length === 0) {
        // Everything journaled before the overflow is replicated: now copy the dirty regions
        // (unless an acknowledged resync is just clearing the bitmap).
        await this.#drained(conn);
        if (!journal.resyncRequired) continue;
        next = await this.#sync(conn, 'bitmap');
        this.#state = 'streaming';
        continue;
      }
      await this.#signal.wait(this.#o.pollMs);
    }
  }

  async #persist(state: SenderDiskState): Promise<void> {
    await writeSenderState(this.disk.statePath, state);
    this.#persisted = state;
  }

  /** Runs a copy of the given kind; returns the sequence journal streaming resumes from. */
  async #sync(conn: FramedConnection, wanted: SyncKind): Promise<number> {
    const source = this.disk.source;
    const journal = source.journal;
    let kind = wanted;
    if (kind === 'hash' && this.#hashUnsupported) kind = 'full';
    this.#requested = null;
    this.#state = kind === 'initial' ? 'initial-sync' : 'resync';
    this.#syncProgress = 0;
    await this.#persist({ synced: this.#persisted?.synced ?? false, sync: { kind } });
    const report: SyncReport = {
      kind,
      diskBytes: source.size,
      regionBytes: 0,
      dataBytes: 0,
      wireBytes: 0,
      blocksCompared: null,
      blocksDiffering: null,
      startedAtMs: Date.now(),
      durationMs: null,
      completed: false,
    };
    const previous = this.#lastSync;
    this.#lastSync = report;

    let fromSeq: number;
    let regions: { offset: number; length: number }[] | null;
    let plan: ResyncPlan | null = null;
    if (kind === 'bitmap') {
      await this.#drained(conn);
      if (!journal.resyncRequired) {
        // An earlier run finished the copy and cleared the bitmap, but the state file did not say so.
        await this.#persist({ synced: true, sync: null });
        this.#lastSync = previous;
        this.#syncProgress = null;
        return this.#ackedSeq + 1;
      }
      plan = await source.beginResync();
      fromSeq = this.#ackedSeq + 1;
      if (fromSeq < journal.status.firstSeq) return this.#sync(conn, 'hash');
      regions = plan.regions;
    } else {
      // Every write with a lower sequence is in the image once flush returns.
      fromSeq = journal.status.nextSeq;
      await source.flush();
      regions = kind === 'hash' ? await this.#compareHashes(conn, report) : null;
    }
    const id = randomUUID();
    const begin: SyncBeginMessage = {
      id,
      kind: kind === 'initial' ? 'initial' : kind === 'full' ? 'full-resync' : 'resync',
      fromSeq,
      regions,
    };
    await this.#sendCounted(
      conn,
      jsonFrame(FrameType.SYNC_BEGIN, begin),
      { lastSeq: null, lastTimeMs: 0, recordBytes: 0 },
      report,
    );
    await this.#copy(conn, regions ?? [{ offset: 0, length: source.size }], report);
    // Any write whose data the copy saw was journaled before it reached the image.
    const throughSeq = journal.status.writtenSeq;
    const resyncPlan = plan;
    await this.#sendCounted(
      conn,
      jsonFrame(FrameType.SYNC_COMPLETE, { id, throughSeq }),
      {
        lastSeq: null,
        lastTimeMs: 0,
        recordBytes: 0,
        onAck: async () => {
          await this.#persist({ synced: true, sync: null });
          if (resyncPlan !== null) await journal.completeResync(resyncPlan);
          report.completed = true;
          report.durationMs = Date.now() - report.startedAtMs;
          // The replica now holds the disk as it was when the copy started (and catches up from there).
          this.#ackedTimeMs = Math.max(this.#ackedTimeMs ?? 0, report.startedAtMs);
        },
      },
      report,
    );
    this.#syncProgress = null;
    return fromSeq;
  }

  /** Sends the regions' contents: holes and zero blocks as zero ranges, data chunks compressed when it pays. */
  async #copy(
    conn: FramedConnection,
    regions: { offset: number; length: number }[],
    report: SyncReport,
  ): Promise<void> {
    const source = this.disk.source;
    const total = regions.reduce((n, r) => n + r.length, 0);
    report.regionBytes = total;
    let done = 0;
    const chunk = this.#o.syncChunkBytes;
    const pending: { parts: Promise<Buffer[]>; length: number }[] = [];
    const flushOne = async (): Promise<void> => {
      const item = pending.shift() as { parts: Promise<Buffer[]>; length: number };
      await this.#sendCounted(
        conn,
        await item.parts,
        { lastSeq: null, lastTimeMs: 0, recordBytes: 0 },
        report,
      );
      done += item.length;
      this.#syncProgress = total === 0 ? 1 : done / total;
    };
    const queue = async (offset: number, length: number, zero: boolean): Promise<void> => {
      const parts = (async () => {
        let data: Buffer | null = null;
        if (!zero) {
          data = await source.read(offset, length);
          if (isZero(data)) data = null;
          else report.dataBytes += length;
        }
        const tryLevel = data === null ? null : this.#syncProbe.next();
        const { payload, compressed } = await syncDataPayload(offset, data, length, tryLevel);
        this.#syncProbe.record(tryLevel !== null, compressed);
        return encodeFrame(FrameType.SYNC_DATA, payload);
      })();
      parts.catch(() => {});
      pending.push({ parts, length });
      if (pending.length >= PIPELINE_DEPTH) await flushOne();
    };
    for (const region of regions) {
      const end = region.offset + region.length;
      let pos = region.offset;
      while (pos < end) {
        this.#check(conn);
        const extents = await source.blockStatus(pos, Math.min(end - pos, 1 << 30));
        const before = pos;
        for (const ext of extents) {
          const a = Math.max(pos, ext.offset);
          const b = Math.min(end, ext.offset + ext.length);
          if (b <= a) continue;
          const zero = (ext.flags & 2) !== 0;
          const step = zero ? ZERO_FRAME_MAX : chunk;
          for (let at = a; at < b; at += step) await queue(at, Math.min(step, b - at), zero);
          pos = b;
        }
        if (pos === before) {
          throw new HavenError(
            'internal',
            `block status of '${this.disk.diskKey}' made no progress at ${pos}`,
          );
        }
      }
    }
    while (pending.length > 0) await flushOne();
  }

  /**
   * Asks the receiver for block hashes of the whole disk and compares them with
   * the source's; returns the differing blocks as merged regions.
   */
  async #compareHashes(
    conn: FramedConnection,
    report: SyncReport,
  ): Promise<{ offset: number; length: number }[]> {
    const source = this.disk.source;
    const block = this.#o.hashBlockBytes;
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
      const reqId = this.#nextReqId++;
      const reply = new Promise<Buffer[]>((resolve) => this.#hashWaiters.set(reqId, resolve));
      const m: HashRequestMessage = { reqId, offset, length, blockSize: block };
      const parts = jsonFrame(FrameType.HASH_REQUEST, m);
      await this.#sendRaw(
        conn,
        parts,
        parts.reduce((n, p) => n + p.length, 0),
        report,
      );
      const got = await Promise.race([reply, conn.closed.then(() => null)]);
      this.#check(conn);
      return got ?? [];
    };
    const regions: { offset: number; length: number }[] = [];
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
          (e) => (e.flags & 2) !== 0 && e.offset <= at && at + n <= e.offset + e.length,
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
        this.#syncProgress = (0.5 * (at + n)) / source.size;
      }
    }
    report.blocksCompared = compared;
    report.blocksDiffering = differing;
    return regions;
  }
}

/**
 * The primary host's replication sender: replicates each added disk's journal
 * to its recovery host (initial copy, resyncs, then streaming), sharing one
 * bandwidth limit. Trims each journal only through what the receiver
 * acknowledged as durable.
 */
export class Sender {
  readonly identity: Pick<HostIdentity, 'keyPem' | 'certPem'>;
  readonly bucket: TokenBucket | null;
  readonly #options: ResolvedOptions;
  readonly #disks = new Map<string, DiskReplicator>();

  constructor(options: SenderOptions) {
    this.identity = options.identity;
    const limit = options.bandwidthBytesPerSec ?? null;
    this.bucket = limit === null ? null : new TokenBucket(limit);
    this.#options = {
      windowBytes: options.windowBytes ?? 32 << 20,
      batchBytes: options.batchBytes ?? 1 << 20,
      pollMs: options.pollMs ?? 5,
      syncChunkBytes: options.syncChunkBytes ?? 1 << 20,
      hashBlockBytes: options.hashBlockBytes ?? 64 << 10,
      compressionLevel: options.compressionLevel === undefined ? 1 : options.compressionLevel,
      backoffMinMs: options.backoffMinMs ?? 100,
      backoffMaxMs: options.backoffMaxMs ?? 10_000,
    };
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

  /** Asks for a full resync (copy everything) or a hash-compare resync (copy only differing blocks). */
  requestResync(diskKey: string, kind: 'full' | 'hash'): void {
    this.#get(diskKey).request(kind);
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
