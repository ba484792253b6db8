/**
 * Server side of the transmission phase: reads requests, runs them against
 * the backend concurrently, and writes each reply as soon as it is ready
 * (so replies may overtake each other; the cookie ties them together).
 */
import type { BlockExtent } from './block-backend.ts';
import {
  Command,
  CommandFlag,
  NbdErrno,
  REQUEST_HEADER_SIZE,
  REQUEST_MAGIC,
  ReplyFlag,
  ReplyType,
  STRUCTURED_REPLY_HEADER_SIZE,
} from './constants.ts';
import type { MemoryAccount } from './memory-budget.ts';
import { chunkHeader, doneChunk, errorChunk, simpleReply } from './messages.ts';
import { toNbdErrno } from './nbd-errors.ts';
import type { PayloadPool } from './payload-pool.ts';
import { type StatusRun, sectorAligned } from './sector-extents.ts';
import { type Negotiated, ProtocolViolation } from './server-handshake.ts';
import { StreamEndedError, type StreamReader } from './stream-reader.ts';

export interface TransmissionLimits {
  /** Largest READ/WRITE payload accepted (and advertised as maximum block size). */
  maxPayload: number;
  /** Payload bytes (requests being served plus replies not yet sent) before we stop reading. */
  maxInFlightBytes: number;
  maxInFlightRequests: number;
}

export interface TransmissionIo {
  readonly reader: StreamReader;
  /** Writes one message; `done` runs once the bytes left our buffers (or the socket died). */
  write(bufs: Buffer[], done: () => void): void;
  /** The connection's share of the server's memory budget: payloads are reserved there before they are read. */
  readonly memory?: MemoryAccount;
  /** Where WRITE payloads split across socket reads are copied to, and handed back once answered. */
  readonly payloads?: PayloadPool;
}

/** Largest number of extents sent in one BLOCK_STATUS reply. */
const MAX_EXTENTS = 4096;
const EMPTY: Buffer = Buffer.alloc(0);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

class RequestError extends Error {
  readonly errno: number;
  constructor(errno: number, message: string) {
    super(message);
    this.errno = errno;
  }
}

/** One transmission request as read off the wire, until its reply is sent. */
interface TransmissionRequest {
  flags: number;
  type: number;
  cookie: Buffer;
  offset: bigint;
  length: number;
  /** The write's data (empty for other commands). */
  payload: Buffer;
  /** For a read: a buffer of the pool the backend may read into. */
  into: Buffer | null;
}

export class TransmissionSession {
  readonly #io: TransmissionIo;
  readonly #n: Negotiated;
  readonly #limits: TransmissionLimits;
  #inFlightRequests = 0;
  #inFlightBytes = 0;
  #stopped = false;
  #waiters: Array<() => void> = [];

  constructor(io: TransmissionIo, negotiated: Negotiated, limits: TransmissionLimits) {
    this.#io = io;
    this.#n = negotiated;
    this.#limits = limits;
  }

  get inFlightRequests(): number {
    return this.#inFlightRequests;
  }

  get inFlightBytes(): number {
    return this.#inFlightBytes;
  }

  /** Stops taking requests; `run()` then resolves once those in flight are answered. */
  stop(): void {
    this.#stopped = true;
    this.#io.reader.cancel(new StreamEndedError(0, 0));
    this.#io.memory?.cancel();
  }

  /**
   * Serves requests until the client sends DISC or closes, then waits for the
   * replies in flight. Throws ProtocolViolation when the stream is garbage.
   */
  async run(): Promise<void> {
    try {
      await this.#loop();
    } finally {
      await this.#until(() => this.#inFlightRequests === 0);
    }
  }

  async #loop(): Promise<void> {
    const reader = this.#io.reader;
    const limits = this.#limits;
    while (!this.#stopped) {
      if (
        this.#inFlightRequests >= limits.maxInFlightRequests ||
        this.#inFlightBytes >= limits.maxInFlightBytes
      ) {
        await this.#until(
          () =>
            this.#inFlightRequests < limits.maxInFlightRequests &&
            this.#inFlightBytes < limits.maxInFlightBytes,
        );
      }
      let header: Buffer;
      try {
        header = reader.tryRead(REQUEST_HEADER_SIZE) ?? (await reader.read(REQUEST_HEADER_SIZE));
      } catch (err) {
        // A clean close between requests is a (rude but legal) hard disconnect.
        if (this.#stopped || (err instanceof StreamEndedError && reader.buffered === 0)) return;
        throw err;
      }
      if (header.readUInt32BE(0) !== REQUEST_MAGIC)
        throw new ProtocolViolation('NBD request with a bad magic');
      const flags = header.readUInt16BE(4);
      const type = header.readUInt16BE(6);
      const cookie = Buffer.from(header.subarray(8, 16));
      const offset = header.readBigUInt64BE(16);
      const length = header.readUInt32BE(24);

      if (type === Command.DISC) return;
      const reserve =
        type === Command.READ
          ? Math.min(length, limits.maxPayload)
          : type === Command.WRITE && length <= limits.maxPayload
            ? length
            : 0;
      // Nothing more is read from this client until the server as a whole has room for the payload.
      const granted = this.#io.memory?.acquire(reserve);
      if (granted) {
        try {
          await granted;
        } catch (err) {
          if (this.#stopped) return;
          throw err;
        }
      }
      let payload = EMPTY;
      // Set when the payload was copied into a buffer of the pool (not a view of a socket read).
      let pooled: Buffer | null = null;
      if (type === Command.WRITE && length > 0) {
        if (length > limits.maxPayload) {
          // Within 32 bits the payload is finite: drain it in small steps and
          // answer EINVAL rather than drop a client that misjudged the limit.
          await reader.skip(length);
          this.#dispatch({ flags, type, cookie, offset, length, payload: EMPTY, into: null }, 0, null);
          continue;
        }
        const pool = this.#io.payloads;
        const alloc =
          pool === undefined
            ? undefined
            : (n: number): Buffer => {
                pooled = pool.take(n);
                return pooled;
              };
        try {
          payload = reader.tryRead(length, alloc) ?? (await reader.read(length, alloc));
        } catch (err) {
          this.#io.memory?.release(reserve);
          throw err;
        }
      } else if (type === Command.READ && length <= limits.maxPayload && this.#io.payloads?.pools(length)) {
        // Read into a reused buffer: a new one per reply cost page faults in
        // the read syscall and GC (64 KiB reads: a fifth of the main thread).
        pooled = this.#io.payloads.take(length);
      }
      const into = type === Command.READ ? pooled : null;
      this.#dispatch({ flags, type, cookie, offset, length, payload, into }, reserve, pooled);
    }
  }

  /** Runs a request; `pooled` (its payload's or read's buffer) goes back to the pool once the request is answered. */
  #dispatch(request: TransmissionRequest, reserve: number, pooled: Buffer | null): void {
    this.#inFlightRequests++;
    this.#inFlightBytes += reserve;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.#inFlightRequests--;
      this.#inFlightBytes -= reserve;
      this.#io.memory?.release(reserve);
      // The backend settled before the reply was written: nothing uses the payload any more.
      if (pooled !== null) this.#io.payloads?.give(pooled);
      this.#wake();
    };
    this.#execute(request).then(
      (bufs) => this.#io.write(bufs, release),
      (err: unknown) => this.#io.write(this.#errorReply(request.cookie, err), release),
    );
  }

  async #execute(request: TransmissionRequest): Promise<Buffer[]> {
    const { flags, type, cookie, offset, length, payload } = request;
    const n = this.#n;
    const backend = n.exp.backend;
    const size = BigInt(backend.size);
    const end = offset + BigInt(length);
    let allowed = CommandFlag.FUA;
    if (type === Command.READ && n.structuredReplies) allowed |= CommandFlag.DF;
    if (type === Command.WRITE_ZEROES) allowed |= CommandFlag.NO_HOLE;
    if (type === Command.BLOCK_STATUS) allowed |= CommandFlag.REQ_ONE;
    if ((flags & ~allowed) !== 0) {
      throw new RequestError(NbdErrno.EINVAL, `command flags 0x${flags.toString(16)} are not valid here`);
    }
    const fua = (flags & CommandFlag.FUA) !== 0;
    const writes = type === Command.WRITE || type === Command.TRIM || type === Command.WRITE_ZEROES;
    if (writes && backend.readOnly) throw new RequestError(NbdErrno.EPERM, 'the export is read-only');
    /** Refuses a request reaching past the end of the export; `what` names it in the message. */
    const assertInRange = (errno: number, what: string) => {
      if (end > size || end > MAX_SAFE)
        throw new RequestError(errno, `${what} ends at ${end}, past the end (${size})`);
    };
    const assertPayloadLimit = (what: string) => {
      if (length > this.#limits.maxPayload) {
        throw new RequestError(
          NbdErrno.EINVAL,
          `${what} of ${length} bytes exceeds ${this.#limits.maxPayload}`,
        );
      }
    };
    const at = Number(offset);

    switch (type) {
      case Command.READ: {
        assertPayloadLimit('read');
        assertInRange(NbdErrno.EINVAL, 'read');
        const data = length > 0 ? await backend.read(at, length, request.into ?? undefined) : EMPTY;
        if (data.length !== length) throw new RequestError(NbdErrno.EIO, 'backend returned a short read');
        if (!n.structuredReplies) return [simpleReply(cookie, 0), data];
        if (length === 0) return [doneChunk(cookie)];
        const head = chunkHeader(cookie, ReplyFlag.DONE, ReplyType.OFFSET_DATA, 8 + length, 8);
        head.writeBigUInt64BE(offset, STRUCTURED_REPLY_HEADER_SIZE);
        return [head, data];
      }
      case Command.WRITE: {
        assertPayloadLimit('write');
        assertInRange(NbdErrno.ENOSPC, 'write');
        if (length > 0) await backend.write(at, payload, { fua });
        return [simpleReply(cookie, 0)];
      }
      case Command.FLUSH: {
        if (offset !== 0n || length !== 0)
          throw new RequestError(NbdErrno.EINVAL, 'flush offset and length must be 0');
        await backend.flush();
        return [simpleReply(cookie, 0)];
      }
      case Command.TRIM: {
        if (!backend.canTrim) throw new RequestError(NbdErrno.EINVAL, 'trim is not supported on this export');
        assertInRange(NbdErrno.EINVAL, 'trim');
        if (length > 0) await backend.trim(at, length, { fua });
        return [simpleReply(cookie, 0)];
      }
      case Command.WRITE_ZEROES: {
        if (!backend.canWriteZeroes) {
          throw new RequestError(NbdErrno.EINVAL, 'write zeroes is not supported on this export');
        }
        assertInRange(NbdErrno.ENOSPC, 'zeroing');
        const mayTrim = (flags & CommandFlag.NO_HOLE) === 0;
        if (length > 0) await backend.writeZeroes(at, length, { fua, mayTrim });
        return [simpleReply(cookie, 0)];
      }
      case Command.BLOCK_STATUS: {
        if (n.allocationContextId === 0) {
          throw new RequestError(NbdErrno.EINVAL, 'no metadata context was negotiated for this export');
        }
        if (length === 0) throw new RequestError(NbdErrno.EINVAL, 'block status of 0 bytes');
        assertInRange(NbdErrno.EINVAL, 'query');
        const extents = await backend.blockStatus(at, length);
        return [this.#blockStatusChunk(cookie, at, length, extents, (flags & CommandFlag.REQ_ONE) !== 0)];
      }
      default:
        throw new RequestError(NbdErrno.EINVAL, `unknown command ${type}`);
    }
  }

  /** Clips the backend's extents to the request and encodes them as one chunk. */
  #blockStatusChunk(
    cookie: Buffer,
    offset: number,
    length: number,
    extents: BlockExtent[],
    one: boolean,
  ): Buffer {
    const end = offset + length;
    const runs: StatusRun[] = [];
    let cursor = offset;
    for (const e of extents) {
      if (cursor >= end || runs.length > MAX_EXTENTS) break;
      const start = Math.max(e.offset, cursor);
      if (start !== cursor) break; // a gap: report what is contiguous so far
      const stop = Math.min(e.offset + e.length, end);
      if (stop <= start) continue;
      runs.push({ start, end: stop, flags: e.flags >>> 0 });
      cursor = stop;
    }
    const descriptors = sectorAligned(runs)
      .slice(0, one ? 1 : MAX_EXTENTS)
      .map((r): [number, number] => [r.end - r.start, r.flags]);
    if (descriptors.length === 0) throw new RequestError(NbdErrno.EIO, 'backend reported no extent');
    const size = 4 + descriptors.length * 8;
    const out = chunkHeader(cookie, ReplyFlag.DONE, ReplyType.BLOCK_STATUS, size, size);
    let pos = STRUCTURED_REPLY_HEADER_SIZE;
    out.writeUInt32BE(this.#n.allocationContextId, pos);
    pos += 4;
    for (const [len, flags] of descriptors) {
      out.writeUInt32BE(len, pos);
      out.writeUInt32BE(flags, pos + 4);
      pos += 8;
    }
    return out;
  }

  #errorReply(cookie: Buffer, err: unknown): Buffer[] {
    const errno = err instanceof RequestError ? err.errno : toNbdErrno(err);
    const message = err instanceof Error ? err.message : String(err);
    // With structured replies a READ must not get a simple reply; others may,
    // but a chunk carries the message for a human.
    if (this.#n.structuredReplies) return [errorChunk(cookie, errno, message)];
    return [simpleReply(cookie, errno)];
  }

  #until(ready: () => boolean): Promise<void> {
    if (ready()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (ready()) resolve();
        else this.#waiters.push(check);
      };
      this.#waiters.push(check);
    });
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}
