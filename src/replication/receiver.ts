import type { AddressInfo } from 'node:net';
import type { Server, TLSSocket } from 'node:tls';
import { sameFingerprint } from '../control/index.ts';
import { blockDigest } from '../disk/index.ts';
import { HavenError } from '../errors/index.ts';
import { FramedConnection } from './framed-connection.ts';
import type { ReplicaSink } from './replica-sink.ts';
import type { HostIdentity } from './replication-tls.ts';
import { createPinnedServer } from './replication-tls.ts';
import {
  type AckMessage,
  type ErrorMessage,
  encodeFrame,
  type Frame,
  FrameType,
  type HashRequestMessage,
  type HelloMessage,
  hashesPayload,
  jsonFrame,
  PROTOCOL_VERSION,
  parseJson,
  parseRecordsPayload,
  parseSyncDataPayload,
  type ResumeMessage,
  type SyncBeginMessage,
  type SyncCompleteMessage,
} from './wire-protocol.ts';

export interface ReceiverOptions {
  identity: Pick<HostIdentity, 'keyPem' | 'certPem'>;
  sink: ReplicaSink;
  /** Fingerprints of the sending hosts' certificates (distributed by the vault). */
  allowedSenders: string[];
  host?: string;
  /** Replication port; 0 picks a free one (tests). Default 9443. */
  port?: number;
  /** Time a new connection has to say HELLO. */
  helloTimeoutMs?: number;
}

export interface ReceiverStats {
  connections: number;
  refused: number;
  recordsAppended: number;
  bytesReceived: number;
}

const MAX_QUEUED_BYTES = 64 << 20;
const HASH_BLOCK_LIMIT = 1 << 20;
const MAX_GROUP_BYTES = 16 << 20;

/** A group of record batches or copied data handed to the sink: its durable sequence once stored. */
interface StoredRecords {
  durable: Promise<number>;
}

/** One sender connection, bound to one disk after HELLO. */
class ReceiverSession {
  readonly conn: FramedConnection;
  diskKey: string | null = null;
  syncId: string | null = null;
  #handled = 0;
  #queue: Frame[] = [];
  #queuedBytes = 0;
  #running: Promise<void> | null = null;
  #failed = false;
  /** Settles when every append handed to the sink so far is stored and acknowledged (rejects if one failed). */
  #stored: Promise<void> = Promise.resolve();

  constructor(conn: FramedConnection) {
    this.conn = conn;
  }

  /** Settles when every frame accepted so far was handled. */
  get idle(): Promise<void> {
    return (this.#running ?? Promise.resolve()).then(() => this.#stored.catch(() => {}));
  }

  /**
   * Queues a frame. Frames are handled one at a time in order, except that
   * RECORDS frames waiting together go to the sink in one append, and an
   * append still syncing does not hold up the next one (the sink stores them
   * in call order; those written meanwhile share a sync). SYNC_DATA frames
   * waiting together are likewise written as one group, and a group still
   * being written does not hold up the next (a copy writes each byte once).
   * `handle` resolves such a group once it is handed to the sink; any other
   * frame waits until earlier groups are stored.
   */
  enqueue(frame: Frame, handle: (frames: Frame[]) => Promise<StoredRecords | undefined>): void {
    this.#queue.push(frame);
    this.#queuedBytes += frame.payload.length;
    if (this.#queuedBytes > MAX_QUEUED_BYTES) this.conn.socket.pause();
    this.#running ??= this.#drain(handle).finally(() => {
      this.#running = null;
    });
  }

  async #drain(handle: (frames: Frame[]) => Promise<StoredRecords | undefined>): Promise<void> {
    while (this.#queue.length > 0 && !this.conn.isClosed && !this.#failed) {
      let take = 1;
      const type = this.#queue[0]?.type;
      const grouped = type === FrameType.RECORDS || type === FrameType.SYNC_DATA;
      if (grouped) {
        let bytes = 0;
        while (take < this.#queue.length && this.#queue[take]?.type === type && bytes < MAX_GROUP_BYTES) {
          bytes += this.#queue[take]?.payload.length ?? 0;
          take++;
        }
      }
      const frames = this.#queue.splice(0, take);
      const release = () => {
        for (const f of frames) this.#queuedBytes -= f.payload.length;
        if (this.#queuedBytes <= MAX_QUEUED_BYTES / 2) this.conn.socket.resume();
      };
      try {
        if (!grouped) await this.#stored;
        const appended = await handle(frames);
        if (appended === undefined) release();
        else {
          // Acknowledged in order; the frames' bytes count against the queue until they are stored.
          this.#stored = this.#stored.then(async () => {
            try {
              this.handled(await appended.durable, frames.length);
            } finally {
              release();
            }
          });
          this.#stored.catch((e: unknown) => this.fail(e));
        }
      } catch (e) {
        release();
        this.fail(e);
      }
    }
  }

  /** `count` frames the sender's window counts were handled durably: acknowledge when nothing else waits, or often enough. */
  handled(durableSeq: number, count = 1): void {
    const before = this.#handled;
    this.#handled += count;
    if (this.#queue.length === 0 || Math.floor(before / 16) !== Math.floor(this.#handled / 16)) {
      const ack: AckMessage = { frames: this.#handled, durableSeq };
      void this.conn.send(jsonFrame(FrameType.ACK, ack)).catch(() => {});
    }
  }

  fail(e: unknown): void {
    if (this.conn.isClosed || this.#failed) return;
    this.#failed = true;
    const error: ErrorMessage =
      e instanceof HavenError
        ? { code: e.code, message: e.message }
        : { code: 'internal', message: e instanceof Error ? e.message : String(e) };
    void this.conn.send(jsonFrame(FrameType.ERROR, error)).catch(() => {});
    // Let the error frame go out before closing.
    this.conn.socket.end();
    setTimeout(() => this.conn.close(new Error(error.message)), 200).unref();
  }
}

/**
 * The recovery host's end of replication: a TLS server on the replication
 * port that accepts pinned senders, hands their batches and sync data to the
 * replica store (`ReplicaSink`) in order, and acknowledges only what the sink
 * reported durable.
 */
export class Receiver {
  readonly #options: ReceiverOptions;
  readonly #allowed: Set<string>;
  readonly #sessions = new Set<ReceiverSession>();
  readonly #byDisk = new Map<string, ReceiverSession>();
  #server: Server | null = null;
  readonly stats: ReceiverStats = { connections: 0, refused: 0, recordsAppended: 0, bytesReceived: 0 };

  constructor(options: ReceiverOptions) {
    this.#options = options;
    this.#allowed = new Set(options.allowedSenders);
  }

  allowSender(fingerprint: string): void {
    this.#allowed.add(fingerprint);
  }

  /** Refuses a sender from now on and drops its open connections. */
  disallowSender(fingerprint: string): void {
    for (const f of [...this.#allowed]) if (sameFingerprint(f, fingerprint)) this.#allowed.delete(f);
    for (const s of this.#sessions) {
      const fp = (s.conn.socket.getPeerCertificate() as { fingerprint256?: string }).fingerprint256;
      if (fp !== undefined && sameFingerprint(fp, fingerprint))
        s.conn.close(new Error('sender no longer allowed'));
    }
  }

  /** Listens on `port` (default: the options' port, else 9443; 0 picks a free one). */
  async listen(port = this.#options.port ?? 9443): Promise<{ host: string; port: number }> {
    const server = createPinnedServer(
      this.#options.identity,
      (fp) => [...this.#allowed].some((a) => sameFingerprint(a, fp)),
      (socket) => this.#accept(socket),
      () => {
        this.stats.refused++;
      },
    );
    this.#server = server;
    const host = this.#options.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return { host, port: (server.address() as AddressInfo).port };
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    for (const s of this.#sessions) s.conn.close();
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
    await Promise.all([...this.#sessions].map((s) => s.idle));
  }

  #accept(socket: TLSSocket): void {
    this.stats.connections++;
    const conn = new FramedConnection(socket);
    const session = new ReceiverSession(conn);
    this.#sessions.add(session);
    const helloTimer = setTimeout(
      () => session.fail(new HavenError('bad_request', 'no HELLO within the time allowed')),
      this.#options.helloTimeoutMs ?? 10_000,
    );
    helloTimer.unref();
    conn.onFrame = (frame) => {
      this.stats.bytesReceived += frame.payload.length + 5;
      if (frame.type === FrameType.HELLO) clearTimeout(helloTimer);
      session.enqueue(frame, async (frames) => {
        if (frames[0]?.type === FrameType.RECORDS) return this.#appendRecords(session, frames);
        if (frames[0]?.type === FrameType.SYNC_DATA) return this.#writeSyncData(session, frames);
        await this.#handle(session, frames[0] as Frame);
        return undefined;
      });
    };
    void conn.closed.then(() => {
      clearTimeout(helloTimer);
      this.#sessions.delete(session);
      if (session.diskKey !== null && this.#byDisk.get(session.diskKey) === session) {
        this.#byDisk.delete(session.diskKey);
      }
    });
  }

  /** Hands a group of record batches to the sink; returns its promise of the durable sequence. */
  async #appendRecords(session: ReceiverSession, frames: Frame[]): Promise<StoredRecords> {
    const diskKey = session.diskKey;
    if (diskKey === null) throw new HavenError('bad_request', 'expected HELLO, got record batches');
    const records = (await Promise.all(frames.map((f) => parseRecordsPayload(f.payload)))).flat();
    const durable = this.#options.sink.append(diskKey, records).then((seq) => {
      this.stats.recordsAppended += records.length;
      return seq;
    });
    // Handled by the session once the appends before it are stored.
    durable.catch(() => {});
    return { durable };
  }

  /** Hands a group of copied data to the sink, all at once; returns its promise of the durable sequence. */
  async #writeSyncData(session: ReceiverSession, frames: Frame[]): Promise<StoredRecords> {
    const diskKey = session.diskKey;
    if (diskKey === null) throw new HavenError('bad_request', 'expected HELLO, got sync data');
    const syncId = this.#syncIdOf(session);
    const sink = this.#options.sink;
    const parts = await Promise.all(frames.map((f) => parseSyncDataPayload(f.payload)));
    const durable = Promise.all(
      parts.map((d) => sink.writeSyncData(diskKey, syncId, d.offset, d.data, d.length)),
    ).then(() => sink.durableSequence(diskKey));
    // Handled by the session once the groups before it are stored.
    durable.catch(() => {});
    return { durable };
  }

  async #handle(session: ReceiverSession, frame: Frame): Promise<void> {
    const sink = this.#options.sink;
    if (session.diskKey === null) {
      if (frame.type !== FrameType.HELLO) {
        throw new HavenError('bad_request', `expected HELLO, got frame type ${frame.type}`);
      }
      await this.#hello(session, parseJson<HelloMessage>(frame));
      return;
    }
    const diskKey = session.diskKey;
    switch (frame.type) {
      case FrameType.SYNC_BEGIN: {
        const m = parseJson<SyncBeginMessage>(frame);
        await sink.beginSync(diskKey, { id: m.id, kind: m.kind, fromSeq: m.fromSeq, regions: m.regions });
        session.syncId = m.id;
        session.handled(await sink.durableSequence(diskKey));
        return;
      }
      case FrameType.SYNC_COMPLETE: {
        const m = parseJson<SyncCompleteMessage>(frame);
        await sink.completeSync(diskKey, m.id, m.throughSeq);
        session.handled(await sink.durableSequence(diskKey));
        return;
      }
      case FrameType.HASH_REQUEST: {
        await this.#hashes(session, diskKey, parseJson<HashRequestMessage>(frame));
        return;
      }
      case FrameType.ERROR: {
        const m = parseJson<ErrorMessage>(frame);
        session.conn.close(new Error(`sender reported: ${m.message}`));
        return;
      }
      default:
        throw new HavenError('bad_request', `unexpected replication frame type ${frame.type}`);
    }
  }

  // SYNC_DATA carries no sync id (it would cost bytes per frame): it belongs to the last SYNC_BEGIN.
  #syncIdOf(session: ReceiverSession): string {
    if (session.syncId === null) throw new HavenError('bad_request', 'sync data arrived before SYNC_BEGIN');
    return session.syncId;
  }

  async #hello(session: ReceiverSession, hello: HelloMessage): Promise<void> {
    if (hello.v !== PROTOCOL_VERSION) {
      throw new HavenError(
        'bad_request',
        `replication protocol version ${hello.v} is not supported (${PROTOCOL_VERSION} is)`,
      );
    }
    if (typeof hello.diskKey !== 'string' || hello.diskKey.length === 0 || hello.diskKey.length > 512) {
      throw new HavenError('validation_failed', 'HELLO needs a disk key of 1 to 512 characters');
    }
    if (!Number.isSafeInteger(hello.sizeBytes) || hello.sizeBytes <= 0) {
      throw new HavenError('validation_failed', `disk size ${hello.sizeBytes} is not a positive integer`);
    }
    // A reconnecting sender replaces its old connection; wait until that one's sink calls are done.
    const previous = this.#byDisk.get(hello.diskKey);
    if (previous !== undefined) {
      previous.conn.close(new Error('replaced by a new connection for the same disk'));
      await previous.idle;
    }
    session.diskKey = hello.diskKey;
    this.#byDisk.set(hello.diskKey, session);
    await this.#options.sink.ensureDisk(hello.diskKey, hello.sizeBytes);
    const resume: ResumeMessage = {
      durableSeq: await this.#options.sink.durableSequence(hello.diskKey),
      checksums: this.#options.sink.checksRecordChecksums === true,
    };
    await session.conn.send(jsonFrame(FrameType.RESUME, resume));
  }

  async #hashes(session: ReceiverSession, diskKey: string, m: HashRequestMessage): Promise<void> {
    const sink = this.#options.sink;
    if (sink.read === undefined) {
      throw new HavenError('not_available', `replica store cannot read disk '${diskKey}' for a hash compare`);
    }
    if (!Number.isSafeInteger(m.blockSize) || m.blockSize <= 0 || m.blockSize > HASH_BLOCK_LIMIT) {
      throw new HavenError('validation_failed', `hash block size ${m.blockSize} is out of range`);
    }
    const digests: Buffer[] = [];
    for (let at = m.offset; at < m.offset + m.length; at += m.blockSize) {
      const n = Math.min(m.blockSize, m.offset + m.length - at);
      digests.push(blockDigest(await sink.read(diskKey, at, n)));
    }
    await session.conn.send(encodeFrame(FrameType.HASHES, hashesPayload(m.reqId, digests)));
  }
}
