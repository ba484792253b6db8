import { randomUUID } from 'node:crypto';
import type { BlockHashes, JournalRecord } from '../disk/index.ts';
import { type ErrorCode, HavenError } from '../errors/index.ts';
import { planBitmapResync } from './bitmap-resync.ts';
import type { DiskReplicationStatus, ReplicationState } from './disk-replication-status.ts';
import { FramedConnection } from './framed-connection.ts';
import { planFullCopy } from './full-copy.ts';
import { fetchReplicaHashes, HashReplies, planHashCompare } from './hash-compare.ts';
import { journalBytes } from './journal-cursor.ts';
import { emptyDisk, planJournalOnlyCopy } from './journal-only-copy.ts';
import { copyRegions } from './region-copy.ts';
import type { ReplicatedDisk } from './replicated-disk.ts';
import { connectPinned, type HostIdentity } from './replication-tls.ts';
import { NO_RECORDS, RECHECK_MS, SendWindow } from './send-window.ts';
import { LinkClosed, SenderLink, type WireCounters } from './sender-link.ts';
import type { DiskSenderOptions } from './sender-options.ts';
import {
  type ResyncKind,
  type ResyncTicket,
  readSenderState,
  readSenderStateSync,
  type SenderDiskState,
  type SyncKind,
  writeSenderState,
} from './sender-state.ts';
import { Signal } from './signal.ts';
import type { SyncPlan } from './sync-plan.ts';
import { newSyncReport, type SyncReport } from './sync-report.ts';
import type { TokenBucket } from './token-bucket.ts';
import {
  type AckMessage,
  CompressionProbe,
  type ErrorMessage,
  encodeFrame,
  encodeRecordParts,
  type Frame,
  FrameType,
  type HelloMessage,
  jsonFrame,
  PROTOCOL_VERSION,
  parseHashesPayload,
  parseJson,
  type ResumeMessage,
  recordsPayload,
  type SyncBeginMessage,
} from './wire-protocol.ts';

/** Time the receiver has to answer HELLO with RESUME. */
const HELLO_TIMEOUT_MS = 30_000;
/** The receiver's ERROR code when its replica store cannot serve a hash compare. */
const HASH_COMPARE_UNAVAILABLE: ErrorCode = 'not_available';

const SYNC_BEGIN_KIND: Record<SyncKind, SyncBeginMessage['kind']> = {
  initial: 'initial',
  full: 'full-resync',
  bitmap: 'resync',
  hash: 'resync',
};

/** Largest hash block the receiver accepts. */
const MAX_HASH_BLOCK_BYTES = 1 << 20;
/** How long `replicaHashes` waits for a link and an answer by default. */
export const DEFAULT_REPLICA_HASHES_TIMEOUT_MS = 120_000;

/** A `replicaHashes` call waiting for the stream loop. */
interface HashRequest {
  blockBytes: number;
  resolve: (hashes: BlockHashes) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** Strength of a requested sync: a stronger one covers a weaker one asked for before it starts. */
const REQUEST_RANK: Record<ResyncKind, number> = { bitmap: 0, hash: 1, full: 2 };

/** What every disk of one sender shares. */
export interface SenderHost {
  identity: Pick<HostIdentity, 'keyPem' | 'certPem'>;
  /** The host's bandwidth limit; null: unlimited. */
  bucket: TokenBucket | null;
}

/** Replicates one disk over its own connection, reconnecting and resuming until stopped. */
export class DiskReplicator {
  readonly disk: ReplicatedDisk;
  readonly #host: SenderHost;
  readonly #o: DiskSenderOptions;
  readonly #signal = new Signal();
  readonly #window: SendWindow;
  readonly #hashReplies = new HashReplies();
  #conn: FramedConnection | null = null;
  #state: ReplicationState = 'connecting';
  #stopped = false;
  #paused = false;
  #requested: ResyncKind | null = null;
  /** Resync requests are numbered; a completed sync answers every request made before it began. */
  readonly #senderId = randomUUID();
  #lastRequest = 0;
  #serving: number | null = null;
  #doneRequest = 0;
  #hashUnsupported = false;
  /** The receiver's refusal to hash, seen on the current connection. */
  #hashRefusal: string | null = null;
  readonly #hashRequests: HashRequest[] = [];
  #hashing: DiskReplicationStatus['replicaHashes'] = null;
  #persisted: SenderDiskState | null = null;
  #running: Promise<void> = Promise.resolve();
  #unwatch: () => void = () => {};

  #syncProgress: number | null = null;
  #lastSync: SyncReport | null = null;
  #lastError: string | null = null;
  readonly #counters: WireCounters = { wireBytes: 0, batchesCompressed: 0, batchesUncompressed: 0 };
  #connects = 0;
  readonly #recordProbe: CompressionProbe;
  /** The receiver checks records' journaled checksums as it stores them: the journal is read without checking them. */
  #carryChecksums = false;
  readonly #syncProbe: CompressionProbe;

  constructor(disk: ReplicatedDisk, host: SenderHost, options: DiskSenderOptions) {
    this.disk = disk;
    this.#host = host;
    this.#o = options;
    this.#window = new SendWindow({
      cursor: disk.source.journal,
      windowBytes: options.windowBytes,
      signal: this.#signal,
      onTrimError: (e) => {
        this.#lastError = `journal trim failed: ${e.message}`;
      },
    });
    this.#recordProbe = new CompressionProbe(options.compressionLevel);
    this.#syncProbe = new CompressionProbe(options.compressionLevel);
  }

  start(): void {
    try {
      this.#persisted = readSenderStateSync(this.disk.statePath);
    } catch {
      // A damaged state file is reported by the session, which reads it again.
    }
    // Woken when the journal grows: streaming needs no poll.
    this.#unwatch = this.disk.source.journal.onRecords(() => this.#signal.notify());
    this.#running = this.#loop();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unwatch();
    for (const r of this.#hashRequests.splice(0)) {
      clearTimeout(r.timer);
      r.reject(
        new HavenError('operation_not_allowed', `replication of '${this.disk.diskKey}' stopped`, {
          diskKey: this.disk.diskKey,
          state: 'stopped',
        }),
      );
    }
    this.#conn?.close(new LinkClosed('replication stopped'));
    this.#signal.notify();
    await this.#running;
    await this.#window.settled();
  }

  pause(): void {
    this.#paused = true;
    this.#conn?.close(new LinkClosed('replication paused'));
    this.#signal.notify();
  }

  resume(): void {
    this.#paused = false;
    this.#signal.notify();
  }

  /**
   * Asks for a sync of `kind` (a stronger one already asked for stays); the
   * ticket is answered (`status().resyncRequests.done >= request`) once a sync
   * that began after it completed.
   */
  request(kind: ResyncKind): ResyncTicket {
    if (this.#requested === null || REQUEST_RANK[kind] > REQUEST_RANK[this.#requested]) {
      this.#requested = kind;
    }
    this.#lastRequest++;
    this.#signal.notify();
    return { senderId: this.#senderId, request: this.#lastRequest };
  }

  /**
   * The replica's block hashes for the whole disk, once the receiver
   * acknowledged every record the journal holds (`throughSeq`: the last of
   * them). Served by the stream loop, so no record is sent while the replica
   * is hashed. A lost connection is retried with the link; after `timeoutMs`
   * without an answer it rejects with `unreachable`. A receiver that cannot
   * hash rejects it with `not_available`.
   */
  replicaHashes(options: { blockBytes: number; timeoutMs?: number }): Promise<BlockHashes> {
    const { blockBytes } = options;
    if (
      !Number.isSafeInteger(blockBytes) ||
      blockBytes <= 0 ||
      blockBytes % 512 !== 0 ||
      blockBytes > MAX_HASH_BLOCK_BYTES
    ) {
      return Promise.reject(
        new HavenError(
          'validation_failed',
          `hash block size ${blockBytes} must be a multiple of 512 from 512 to ${MAX_HASH_BLOCK_BYTES}`,
          { field: 'blockBytes' },
        ),
      );
    }
    if (this.#stopped) {
      return Promise.reject(
        new HavenError('operation_not_allowed', `replication of '${this.disk.diskKey}' stopped`, {
          diskKey: this.disk.diskKey,
          state: 'stopped',
        }),
      );
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_REPLICA_HASHES_TIMEOUT_MS;
    return new Promise<BlockHashes>((resolve, reject) => {
      const request: HashRequest = {
        blockBytes,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#dropHashRequest(request);
          reject(
            new HavenError(
              'unreachable',
              `the replica of '${this.disk.diskKey}' did not answer with its block hashes within ${timeoutMs} ms ` +
                `(state ${this.#state}${this.#lastError === null ? '' : `, last error: ${this.#lastError}`})`,
              { diskKey: this.disk.diskKey, state: this.#state },
            ),
          );
        }, timeoutMs),
      };
      request.timer.unref();
      this.#hashRequests.push(request);
      this.#signal.notify();
    });
  }

  #dropHashRequest(request: HashRequest): void {
    const i = this.#hashRequests.indexOf(request);
    if (i >= 0) this.#hashRequests.splice(i, 1);
    clearTimeout(request.timer);
  }

  #syncDue(): DiskReplicationStatus['syncDue'] {
    const persisted = this.#persisted;
    if (persisted === null) return null;
    if (!persisted.synced || persisted.sync?.kind === 'initial') return 'initial';
    if (persisted.sync !== null || (this.#requested !== null && this.#requested !== 'bitmap'))
      return 'resync';
    return null;
  }

  /** Cuts the current connection (tests and operators); the sender reconnects. */
  dropConnection(): void {
    this.#conn?.socket.destroy();
  }

  status(): DiskReplicationStatus {
    return {
      diskKey: this.disk.diskKey,
      state: this.#paused ? 'paused' : this.#state,
      syncProgress: this.#syncProgress,
      bytesPending: this.#window.pendingBytes(),
      syncDue: this.#syncDue(),
      resyncRequired: this.disk.source.journal.resyncRequired,
      throughputBytesPerSec: this.#window.throughputBytesPerSec(),
      lastAckedSeq: this.#window.ackedSeq,
      lastAckedRecordTimeMs: this.#window.ackedTimeMs,
      wireBytesSent: this.#counters.wireBytes,
      batchesCompressed: this.#counters.batchesCompressed,
      batchesUncompressed: this.#counters.batchesUncompressed,
      connects: this.#connects,
      lastError: this.#lastError,
      lastSync: this.#lastSync === null ? null : { ...this.#lastSync },
      replicaHashes: this.#hashing === null ? null : { ...this.#hashing },
      resyncRequests: { senderId: this.#senderId, last: this.#lastRequest, done: this.#doneRequest },
    };
  }

  /** Connects, runs a session until it fails, and reconnects with exponential backoff. */
  async #loop(): Promise<void> {
    let backoff = this.#o.backoffMinMs;
    while (!this.#stopped) {
      if (this.#paused) {
        await this.#signal.wait(RECHECK_MS);
        continue;
      }
      let progressed = false;
      try {
        this.#state = 'connecting';
        const socket = await connectPinned(
          this.disk.receiver,
          this.#host.identity,
          this.disk.receiver.fingerprint,
        );
        const conn = new FramedConnection(socket);
        this.#conn = conn;
        this.#connects++;
        void conn.closed.then(() => this.#signal.notify());
        const ackedBefore = this.#window.ackedSeq;
        try {
          await this.#session(
            new SenderLink({
              conn,
              window: this.#window,
              bucket: this.#host.bucket,
              counters: this.#counters,
              halted: () => this.#stopped || this.#paused,
              lastError: () => this.#lastError,
            }),
          );
        } finally {
          progressed =
            this.#window.ackedSeq > ackedBefore || (this.#state as ReplicationState) === 'streaming';
          conn.close();
          this.#window.reset();
          this.#hashReplies.clear();
          this.#hashRefusal = null;
          this.#conn = null;
        }
      } catch (e) {
        if (!(e instanceof LinkClosed) || !(this.#stopped || this.#paused)) {
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

  /** HELLO, RESUME, a sync if one is due, then streaming. */
  async #session(link: SenderLink): Promise<void> {
    const conn = link.conn;
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
    const timeout = setTimeout(
      () => conn.close(new Error('receiver did not answer HELLO')),
      HELLO_TIMEOUT_MS,
    );
    let durable: number;
    try {
      const resume = await Promise.race([resumed, conn.closed.then(() => null)]);
      durable = resume?.durableSeq ?? Number.NaN;
      this.#carryChecksums = resume?.checksums === true;
    } finally {
      clearTimeout(timeout);
    }
    link.check();
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
    this.#window.resume(durable);

    this.#persisted ??= await readSenderState(this.disk.statePath);
    let next = durable + 1;
    const interrupted = this.#persisted.sync?.kind ?? null;
    const kind: SyncKind | null =
      interrupted ??
      (!this.#persisted.synced
        ? 'initial'
        : // A bitmap resync waits until the records before the overflow are streamed (see #stream).
          this.#requested !== null && this.#requested !== 'bitmap'
          ? this.#requested
          : next < journal.status.firstSeq && journal.status.writtenSeq >= next
            ? 'hash'
            : null);
    if (kind !== null) next = await this.#sync(link, kind);
    await this.#stream(link, next);
  }

  #onFrame(conn: FramedConnection, frame: Frame, resume: (m: ResumeMessage) => void): void {
    try {
      switch (frame.type) {
        case FrameType.RESUME:
          resume(parseJson<ResumeMessage>(frame));
          return;
        case FrameType.ACK:
          this.#window.onAck(parseJson<AckMessage>(frame));
          return;
        case FrameType.HASHES: {
          const { reqId, digests } = parseHashesPayload(frame.payload);
          this.#hashReplies.deliver(reqId, digests);
          return;
        }
        case FrameType.ERROR: {
          const m = parseJson<ErrorMessage>(frame);
          this.#lastError = `receiver: ${m.message}`;
          // The connection ends here: never "streaming" beside the receiver's refusal, not even until the loop sees it.
          this.#state = 'error';
          if (m.code === HASH_COMPARE_UNAVAILABLE) {
            this.#hashUnsupported = true;
            this.#hashRefusal = m.message;
          }
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

  async #sendBatch(link: SenderLink, batch: JournalRecord[]): Promise<void> {
    const last = batch.at(-1) as JournalRecord;
    const level = this.#recordProbe.next();
    const { payload, compressed } = await recordsPayload(
      encodeRecordParts(batch, this.#carryChecksums),
      level,
    );
    this.#recordProbe.record(level !== null, compressed);
    if (compressed) this.#counters.batchesCompressed++;
    else this.#counters.batchesUncompressed++;
    await link.send(encodeFrame(FrameType.RECORDS, payload), {
      lastSeq: last.seq,
      lastTimeMs: last.timeMs,
      recordBytes: batch.reduce((n, r) => n + journalBytes(r), 0),
    });
  }

  /** Streams journal records from `from` on, forever; runs resyncs when they become due. */
  async #stream(link: SenderLink, from: number): Promise<void> {
    const journal = this.disk.source.journal;
    let next = from;
    this.#state = 'streaming';
    // Connected and resumed: an error of an earlier connection no longer describes the replication.
    this.#lastError = null;
    for (;;) {
      link.check();
      const wanted = this.#requested;
      if (wanted === 'hash' || wanted === 'full') {
        await link.drained();
        next = await this.#sync(link, wanted);
        this.#state = 'streaming';
        continue;
      }
      if (this.#hashRequests.length > 0 && journal.status.writtenSeq < next) {
        // Hash the replica only once it holds every record the journal has.
        await link.drained();
        if (this.#window.ackedSeq >= journal.status.nextSeq - 1) {
          await this.#serveHashRequest(link);
          continue;
        }
      }
      if (journal.status.writtenSeq >= next) {
        let batch: JournalRecord[] = [];
        let bytes = 0;
        const checksums = this.#carryChecksums ? 'carry' : 'verify';
        for await (const record of journal.records(next, { checksums })) {
          batch.push(record);
          bytes += journalBytes(record);
          next = record.seq + 1;
          if (bytes >= this.#o.batchBytes) {
            await this.#sendBatch(link, batch);
            batch = [];
            bytes = 0;
          }
        }
        if (batch.length > 0) await this.#sendBatch(link, batch);
        continue;
      }
      if (this.disk.source.journalOnly === true && (journal.resyncRequired || wanted === 'bitmap')) {
        // The sink has no image: its dirty regions are resynced by re-arming the mirror, not here.
        this.#lastError = `the journal of '${this.disk.diskKey}' overflowed: its dirty regions must be read from the VM disk (re-arm the mirror)`;
        this.#requested = null;
        await this.#signal.wait(this.#o.pollMs);
        continue;
      }
      if ((journal.resyncRequired || wanted === 'bitmap') && this.#window.isEmpty) {
        // Everything journaled before the overflow is replicated: now copy the dirty regions
        // (unless an acknowledged resync is just clearing the bitmap; one asked for then finds none).
        await link.drained();
        if (!journal.resyncRequired && this.#requested !== 'bitmap') continue;
        next = await this.#sync(link, 'bitmap');
        this.#state = 'streaming';
        continue;
      }
      await this.#signal.wait(this.#o.pollMs);
    }
  }

  /** Answers the oldest `replicaHashes` call (and any other for the same block size). */
  async #serveHashRequest(link: SenderLink): Promise<void> {
    const blockBytes = (this.#hashRequests[0] as HashRequest).blockBytes;
    const diskBytes = this.disk.source.size;
    this.#hashing = { blockBytes, hashedBytes: 0, diskBytes };
    let hashes: BlockHashes;
    try {
      hashes = await fetchReplicaHashes({
        link,
        replies: this.#hashReplies,
        sizeBytes: diskBytes,
        blockBytes,
        throughSeq: this.#window.ackedSeq,
        onProgress: (hashedBytes) => {
          this.#hashing = { blockBytes, hashedBytes, diskBytes };
        },
      });
    } catch (e) {
      const refusal = this.#hashRefusal;
      if (refusal !== null) {
        for (const r of this.#hashRequests.filter((x) => x.blockBytes === blockBytes)) {
          this.#dropHashRequest(r);
          r.reject(
            new HavenError(
              'not_available',
              `the replica of '${this.disk.diskKey}' cannot be hashed: ${refusal}`,
              { diskKey: this.disk.diskKey },
            ),
          );
        }
      }
      throw e;
    } finally {
      this.#hashing = null;
    }
    for (const r of this.#hashRequests.filter((x) => x.blockBytes === blockBytes)) {
      this.#dropHashRequest(r);
      r.resolve(hashes);
    }
  }

  async #persist(state: SenderDiskState): Promise<void> {
    await writeSenderState(this.disk.statePath, state);
    this.#persisted = state;
  }

  /** Runs a copy of the given kind; returns the sequence journal streaming resumes from. */
  async #sync(link: SenderLink, wanted: SyncKind): Promise<number> {
    const source = this.disk.source;
    let kind = wanted;
    if (kind === 'hash' && this.#hashUnsupported) kind = 'full';
    // A whole-disk copy or the kind asked for answers the requests made so far; an interrupted
    // sync that resumes goes on answering the ones it served.
    if (this.#requested !== null && (kind === 'initial' || kind === 'full' || wanted === this.#requested)) {
      this.#serving = this.#lastRequest;
      this.#requested = null;
    }
    const serving = this.#serving;
    const answered = () => {
      if (serving === null) return;
      this.#doneRequest = Math.max(this.#doneRequest, serving);
      if (this.#serving === serving) this.#serving = null;
    };
    this.#state = kind === 'initial' ? 'initial-sync' : 'resync';
    this.#syncProgress = 0;
    await this.#persist({ synced: this.#persisted?.synced ?? false, sync: { kind } });
    const report = newSyncReport(kind, source.size);
    const previous = this.#lastSync;
    this.#lastSync = report;
    const onProgress = (fraction: number) => {
      this.#syncProgress = fraction;
    };

    let plan: SyncPlan;
    if (source.journalOnly === true && kind !== 'initial' && kind !== 'full') {
      throw new HavenError(
        'operation_not_allowed',
        `'${this.disk.diskKey}' is replicated from a journal-only sink: a ${kind} resync needs the VM disk (re-arm the mirror)`,
        { diskKey: this.disk.diskKey, allowed: ['initial', 'full'] },
      );
    }
    if (source.journalOnly === true) {
      plan = planJournalOnlyCopy(source, this.disk.diskKey);
    } else if (kind === 'bitmap') {
      const start = await planBitmapResync(link, source);
      if (start.outcome === 'already-synced') {
        await this.#persist({ synced: true, sync: null });
        this.#lastSync = previous;
        this.#syncProgress = null;
        answered();
        return this.#window.ackedSeq + 1;
      }
      if (start.outcome === 'journal-trimmed') return this.#sync(link, 'hash');
      plan = start.plan;
    } else if (kind === 'hash') {
      plan = await planHashCompare({
        link,
        source,
        replies: this.#hashReplies,
        blockBytes: this.#o.hashBlockBytes,
        report,
        onProgress,
      });
    } else {
      plan = await planFullCopy(source);
    }
    const id = randomUUID();
    const begin: SyncBeginMessage = {
      id,
      kind: SYNC_BEGIN_KIND[kind],
      fromSeq: plan.fromSeq,
      regions: plan.regions,
    };
    await link.send(jsonFrame(FrameType.SYNC_BEGIN, begin), NO_RECORDS, report);
    await copyRegions(plan.regions ?? [{ offset: 0, length: source.size }], {
      link,
      source: plan.journalOnly === true ? emptyDisk(source.size) : source,
      diskKey: this.disk.diskKey,
      chunkBytes: this.#o.syncChunkBytes,
      probe: this.#syncProbe,
      report,
      onProgress,
    });
    // Any write whose data the copy saw was journaled before it reached the image. A journal-only
    // copy saw nothing: its first flush record (cut once the mirror is ready) is the first point.
    const throughSeq = plan.journalOnly === true ? 0 : source.journal.status.writtenSeq;
    const onCopied = plan.onCopied;
    await link.send(
      jsonFrame(FrameType.SYNC_COMPLETE, { id, throughSeq }),
      {
        ...NO_RECORDS,
        onAck: async () => {
          await this.#persist({ synced: true, sync: null });
          await onCopied?.();
          report.completed = true;
          report.durationMs = Date.now() - report.startedAtMs;
          answered();
          // The replica now holds the disk as it was when the copy started (and catches up from there).
          this.#window.coveredThrough(report.startedAtMs);
        },
      },
      report,
    );
    this.#syncProgress = null;
    return plan.fromSeq;
  }
}
