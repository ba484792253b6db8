/**
 * An NBD client for Haven's own use (replication readers, tools, tests):
 * fixed newstyle with GO, structured replies, base:allocation and optional
 * STARTTLS; many requests in flight, matched to replies by cookie.
 */
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { HavenError } from '../errors/index.ts';
import type { BlockExtent } from './block-backend.ts';
import { ByteCursor } from './byte-cursor.ts';
import {
  BASE_ALLOCATION,
  ClientFlag,
  Command,
  CommandFlag,
  HandshakeFlag,
  IHAVEOPT,
  Info,
  isOptionReplyError,
  isReplyTypeError,
  NBD_MAGIC,
  OPTION_REPLY_HEADER_SIZE,
  OPTION_REPLY_MAGIC,
  Option,
  OptionReply,
  PSK_CIPHERS,
  ReplyFlag,
  ReplyType,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  TransmissionFlag,
} from './constants.ts';
import { lengthPrefixed, optionRequest, requestHeader } from './messages.ts';
import { nbdRequestError } from './nbd-errors.ts';
import type { NbdListenAddress } from './nbd-server.ts';
import { StreamReader } from './stream-reader.ts';

export interface NbdClientTlsOptions {
  /** CA certificate(s) that sign the server's certificate. */
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  servername?: string;
  rejectUnauthorized?: boolean;
  /** TLS-PSK instead of certificates: the identity and its key (a view's access secret). */
  psk?: { identity: string; key: Buffer };
}

export interface NbdClientOptions {
  /** Export to attach to; '' is the server's default export. */
  exportName?: string;
  tls?: NbdClientTlsOptions;
  /** Negotiate structured replies (default true). */
  structuredReplies?: boolean;
  /** Negotiate base:allocation for blockStatus (default true; needs structured replies). */
  allocation?: boolean;
  /** Largest reply payload accepted from the server. Default 64 MiB. */
  maxReplyBytes?: number;
}

export interface NbdExportInfo {
  name: string;
  size: number;
  transmissionFlags: number;
  description?: string;
  blockSize?: { minimum: number; preferred: number; maximum: number };
}

export interface NbdListedExport {
  name: string;
  description: string;
}

interface OptionAnswer {
  type: number;
  data: Buffer;
}

interface Pending {
  command: string;
  type: number;
  offset: bigint;
  length: number;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  data?: Buffer;
  covered: number;
  extents?: BlockExtent[];
  error?: HavenError;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function fail(message: string, details: Record<string, unknown> = {}): HavenError {
  return new HavenError('unreachable', message, details);
}

/** The connection during option haggling. */
class Negotiation {
  socket: Duplex;
  reader: StreamReader;
  readonly raw: net.Socket;
  readonly noZeroes: boolean;

  private constructor(raw: net.Socket, reader: StreamReader, noZeroes: boolean) {
    this.raw = raw;
    this.socket = raw;
    this.reader = reader;
    this.noZeroes = noZeroes;
  }

  static async open(address: NbdListenAddress, tlsOptions?: NbdClientTlsOptions): Promise<Negotiation> {
    const raw = 'path' in address ? net.connect(address.path) : net.connect(address.port, address.host);
    raw.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      raw.once('connect', resolve);
      raw.once('error', (err) =>
        reject(fail(`cannot connect to NBD server ${describe(address)}: ${err.message}`, { address })),
      );
    });
    if (!('path' in address)) raw.setNoDelay(true);
    const reader = new StreamReader(raw);
    try {
      const greeting = await reader.read(18);
      if (greeting.readBigUInt64BE(0) !== NBD_MAGIC || greeting.readBigUInt64BE(8) !== IHAVEOPT) {
        throw fail(`${describe(address)} is not a newstyle NBD server`);
      }
      const handshakeFlags = greeting.readUInt16BE(16);
      if ((handshakeFlags & HandshakeFlag.FIXED_NEWSTYLE) === 0) {
        throw fail(`NBD server ${describe(address)} does not support fixed newstyle negotiation`);
      }
      const noZeroes = (handshakeFlags & HandshakeFlag.NO_ZEROES) !== 0;
      const clientFlags = Buffer.allocUnsafe(4);
      clientFlags.writeUInt32BE(ClientFlag.FIXED_NEWSTYLE | (noZeroes ? ClientFlag.NO_ZEROES : 0));
      raw.write(clientFlags);
      const n = new Negotiation(raw, reader, noZeroes);
      if (tlsOptions) await n.#startTls(address, tlsOptions);
      return n;
    } catch (err) {
      raw.destroy();
      throw err;
    }
  }

  async #startTls(address: NbdListenAddress, options: NbdClientTlsOptions): Promise<void> {
    const [answer] = await this.option(Option.STARTTLS);
    if (answer?.type !== OptionReply.ACK) {
      throw fail(`NBD server ${describe(address)} refused TLS: ${replyMessage(answer)}`);
    }
    this.reader.detach();
    const psk = options.psk;
    const secure = tls.connect(
      psk === undefined
        ? this.#certificateOptions(address, options)
        : {
            socket: this.raw,
            ciphers: PSK_CIPHERS,
            maxVersion: 'TLSv1.2',
            checkServerIdentity: () => undefined,
            pskCallback: () => ({ identity: psk.identity, psk: psk.key }),
          },
    );
    secure.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', (err) =>
        reject(fail(`TLS handshake with ${describe(address)} failed: ${err.message}`)),
      );
    });
    this.socket = secure;
    this.reader = new StreamReader(secure);
  }

  #certificateOptions(address: NbdListenAddress, options: NbdClientTlsOptions): tls.ConnectionOptions {
    return {
      socket: this.raw,
      ca: options.ca,
      cert: options.cert,
      key: options.key,
      servername:
        options.servername ?? ('host' in address && !net.isIP(address.host) ? address.host : undefined),
      rejectUnauthorized: options.rejectUnauthorized ?? true,
      // Node refuses an explicit undefined here: the default check is had by leaving it out.
      ...('host' in address && net.isIP(address.host) && options.servername === undefined
        ? {
            checkServerIdentity: (_host: string, cert: tls.PeerCertificate) =>
              tls.checkServerIdentity(address.host, cert),
          }
        : {}),
    };
  }

  /** Sends one option and collects replies up to the final one (ACK or an error). */
  async option(option: number, data?: Buffer): Promise<OptionAnswer[]> {
    this.socket.write(optionRequest(option, data));
    const answers: OptionAnswer[] = [];
    for (;;) {
      const header = await this.reader.read(OPTION_REPLY_HEADER_SIZE);
      if (header.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC || header.readUInt32BE(8) !== option) {
        throw fail(`NBD server sent a malformed reply to option ${option}`);
      }
      const type = header.readUInt32BE(12);
      const length = header.readUInt32BE(16);
      if (length > 1024 * 1024) throw fail(`NBD server sent a ${length}-byte option reply`);
      const payload = length > 0 ? await this.reader.read(length) : Buffer.alloc(0);
      answers.push({ type, data: Buffer.from(payload) });
      if (type === OptionReply.ACK || isOptionReplyError(type)) return answers;
    }
  }

  /** Soft disconnect during negotiation. */
  async abort(): Promise<void> {
    this.socket.write(optionRequest(Option.ABORT));
    const closed = new Promise<void>((resolve) => this.raw.once('close', () => resolve()));
    await Promise.race([this.reader.read(OPTION_REPLY_HEADER_SIZE).catch(() => {}), closed]);
    this.socket.end();
    setTimeout(() => this.raw.destroy(), 1000).unref();
  }
}

function describe(address: NbdListenAddress): string {
  return 'path' in address ? `unix:${address.path}` : `${address.host}:${address.port}`;
}

function replyMessage(answer: OptionAnswer | undefined): string {
  if (!answer) return 'no reply';
  const names = Object.entries(OptionReply).find(([, v]) => v === answer.type)?.[0] ?? String(answer.type);
  return answer.data.length > 0 ? `${names} (${answer.data.toString('utf8')})` : names;
}

function optionError(what: string, answer: OptionAnswer | undefined): HavenError {
  const message = `NBD ${what} refused: ${replyMessage(answer)}`;
  if (answer?.type === OptionReply.ERR_UNKNOWN) return new HavenError('not_found', message);
  if (answer?.type === OptionReply.ERR_TLS_REQD) return new HavenError('forbidden', message);
  return new HavenError('unreachable', message);
}

function infoRequest(name: string, infos: number[]): Buffer {
  const out = Buffer.allocUnsafe(4 + Buffer.byteLength(name) + 2 + 2 * infos.length);
  let pos = lengthPrefixed(name).copy(out, 0);
  out.writeUInt16BE(infos.length, pos);
  pos += 2;
  for (const i of infos) pos = out.writeUInt16BE(i, pos);
  return out;
}

function parseInfo(requested: string, answers: OptionAnswer[]): NbdExportInfo {
  const info: NbdExportInfo = { name: requested, size: -1, transmissionFlags: 0 };
  for (const a of answers) {
    if (a.type !== OptionReply.INFO || a.data.length < 2) continue;
    const c = new ByteCursor(a.data);
    const kind = c.u16();
    if (kind === Info.EXPORT) {
      const size = c.u64();
      if (size > MAX_SAFE) throw fail(`NBD export '${requested}' is larger than 2^53 bytes`);
      info.size = Number(size);
      info.transmissionFlags = c.u16();
    } else if (kind === Info.NAME) info.name = c.string(c.remaining);
    else if (kind === Info.DESCRIPTION) info.description = c.string(c.remaining);
    else if (kind === Info.BLOCK_SIZE)
      info.blockSize = { minimum: c.u32(), preferred: c.u32(), maximum: c.u32() };
  }
  if (info.size < 0) throw fail(`NBD server sent no NBD_INFO_EXPORT for '${requested}'`);
  return info;
}

export class NbdClient {
  readonly info: NbdExportInfo;
  readonly structuredReplies: boolean;
  readonly #socket: Duplex;
  readonly #raw: net.Socket;
  readonly #reader: StreamReader;
  readonly #allocationId: number | null;
  readonly #maxReplyBytes: number;
  readonly #pending = new Map<number, Pending>();
  #nextCookie = 1;
  #idleWaiters: Array<() => void> = [];
  #closed: HavenError | null = null;
  readonly #closedPromise: Promise<void>;

  private constructor(
    n: Negotiation,
    info: NbdExportInfo,
    sr: boolean,
    allocationId: number | null,
    max: number,
  ) {
    this.info = info;
    this.structuredReplies = sr;
    this.#socket = n.socket;
    this.#raw = n.raw;
    this.#reader = n.reader;
    this.#allocationId = allocationId;
    this.#maxReplyBytes = max;
    this.#closedPromise = new Promise((resolve) => {
      const done = () => {
        this.#failAll(fail('NBD connection closed'));
        resolve();
      };
      this.#raw.once('close', done);
      this.#socket.once('close', done);
    });
    this.#readLoop().catch((err: unknown) => {
      this.#failAll(
        err instanceof HavenError ? err : fail(`NBD connection failed: ${(err as Error).message}`),
      );
      this.#raw.destroy();
    });
  }

  static async connect(address: NbdListenAddress, options: NbdClientOptions = {}): Promise<NbdClient> {
    const n = await Negotiation.open(address, options.tls);
    try {
      const name = options.exportName ?? '';
      let sr = false;
      if (options.structuredReplies !== false) {
        const [a] = await n.option(Option.STRUCTURED_REPLY);
        sr = a?.type === OptionReply.ACK;
      }
      let allocationId: number | null = null;
      if (sr && options.allocation !== false) {
        const data = Buffer.concat([
          lengthPrefixed(name),
          Buffer.from([0, 0, 0, 1]),
          lengthPrefixed(BASE_ALLOCATION),
        ]);
        for (const a of await n.option(Option.SET_META_CONTEXT, data)) {
          if (
            a.type === OptionReply.META_CONTEXT &&
            a.data.subarray(4).toString('utf8') === BASE_ALLOCATION
          ) {
            allocationId = a.data.readUInt32BE(0);
          }
        }
      }
      const answers = await n.option(
        Option.GO,
        infoRequest(name, [Info.NAME, Info.DESCRIPTION, Info.BLOCK_SIZE]),
      );
      const last = answers.at(-1);
      let info: NbdExportInfo;
      if (last?.type === OptionReply.ACK) info = parseInfo(name, answers);
      else if (last?.type === OptionReply.ERR_UNSUP) {
        // Old servers: EXPORT_NAME cannot report errors, it just closes.
        n.socket.write(optionRequest(Option.EXPORT_NAME, Buffer.from(name, 'utf8')));
        const reply = await n.reader.read(n.noZeroes ? 10 : 134);
        info = { name, size: Number(reply.readBigUInt64BE(0)), transmissionFlags: reply.readUInt16BE(8) };
      } else throw optionError(`export '${name}'`, last);
      return new NbdClient(n, info, sr, allocationId, options.maxReplyBytes ?? 64 * 1024 * 1024);
    } catch (err) {
      n.raw.destroy();
      throw err;
    }
  }

  /** Names and descriptions of the server's exports (NBD_OPT_LIST). */
  static async list(
    address: NbdListenAddress,
    options: Pick<NbdClientOptions, 'tls'> = {},
  ): Promise<NbdListedExport[]> {
    const n = await Negotiation.open(address, options.tls);
    try {
      const answers = await n.option(Option.LIST);
      const last = answers.at(-1);
      if (last?.type !== OptionReply.ACK) throw optionError('export list', last);
      const out: NbdListedExport[] = [];
      for (const a of answers) {
        if (a.type !== OptionReply.SERVER) continue;
        const c = new ByteCursor(a.data);
        const name = c.string(c.u32());
        out.push({ name, description: c.string(c.remaining) });
      }
      await n.abort();
      return out;
    } finally {
      n.raw.destroy();
    }
  }

  /** Details of one export without attaching to it (NBD_OPT_INFO). */
  static async exportInfo(
    address: NbdListenAddress,
    exportName = '',
    options: Pick<NbdClientOptions, 'tls'> = {},
  ): Promise<NbdExportInfo> {
    const n = await Negotiation.open(address, options.tls);
    try {
      const answers = await n.option(
        Option.INFO,
        infoRequest(exportName, [Info.NAME, Info.DESCRIPTION, Info.BLOCK_SIZE]),
      );
      const last = answers.at(-1);
      if (last?.type !== OptionReply.ACK) throw optionError(`export '${exportName}'`, last);
      const info = parseInfo(exportName, answers);
      await n.abort();
      return info;
    } finally {
      n.raw.destroy();
    }
  }

  get size(): number {
    return this.info.size;
  }

  get readOnly(): boolean {
    return (this.info.transmissionFlags & TransmissionFlag.READ_ONLY) !== 0;
  }

  /** Whether the server offers `flag` (a TransmissionFlag). */
  can(flag: number): boolean {
    return (this.info.transmissionFlags & flag) !== 0;
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  read(offset: number | bigint, length: number): Promise<Buffer> {
    return this.#request('read', Command.READ, 0, offset, length) as Promise<Buffer>;
  }

  write(offset: number | bigint, data: Buffer, options: { fua?: boolean } = {}): Promise<void> {
    const flags = options.fua ? CommandFlag.FUA : 0;
    return this.#request('write', Command.WRITE, flags, offset, data.length, data) as Promise<void>;
  }

  flush(): Promise<void> {
    return this.#request('flush', Command.FLUSH, 0, 0, 0) as Promise<void>;
  }

  trim(offset: number | bigint, length: number, options: { fua?: boolean } = {}): Promise<void> {
    return this.#request(
      'trim',
      Command.TRIM,
      options.fua ? CommandFlag.FUA : 0,
      offset,
      length,
    ) as Promise<void>;
  }

  writeZeroes(
    offset: number | bigint,
    length: number,
    options: { fua?: boolean; noHole?: boolean } = {},
  ): Promise<void> {
    const flags = (options.fua ? CommandFlag.FUA : 0) | (options.noHole ? CommandFlag.NO_HOLE : 0);
    return this.#request('write zeroes', Command.WRITE_ZEROES, flags, offset, length) as Promise<void>;
  }

  /** base:allocation extents from `offset`; may cover less than `length`. */
  blockStatus(
    offset: number | bigint,
    length: number,
    options: { reqOne?: boolean } = {},
  ): Promise<BlockExtent[]> {
    if (this.#allocationId === null) {
      return Promise.reject(
        new HavenError('not_available', 'NBD server did not agree to base:allocation on this connection'),
      );
    }
    const flags = options.reqOne ? CommandFlag.REQ_ONE : 0;
    return this.#request('block status', Command.BLOCK_STATUS, flags, offset, length) as Promise<
      BlockExtent[]
    >;
  }

  /**
   * Sends any request as is: for tests that need what the typed methods
   * refuse to build (unknown commands, odd flags).
   */
  rawRequest(
    type: number,
    flags: number,
    offset: bigint,
    length: number,
    payload?: Buffer,
  ): Promise<unknown> {
    return this.#request(`command ${type}`, type, flags, offset, length, payload);
  }

  /** Soft disconnect: waits for replies in flight, sends DISC, closes. */
  async disconnect(): Promise<void> {
    if (this.#closed) return;
    if (this.#pending.size > 0) await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    if (!this.#closed) {
      this.#socket.write(requestHeader(0, Command.DISC, 0n, 0n, 0));
      this.#socket.end();
    }
    setTimeout(() => this.#raw.destroy(), 2000).unref();
    await this.#closedPromise;
  }

  /** Hard disconnect. */
  destroy(): void {
    this.#raw.destroy();
  }

  #request(
    command: string,
    type: number,
    flags: number,
    offset: number | bigint,
    length: number,
    payload?: Buffer,
  ): Promise<unknown> {
    if (this.#closed) return Promise.reject(this.#closed);
    const off = BigInt(offset);
    const cookie = this.#nextCookie++;
    return new Promise((resolve, reject) => {
      this.#pending.set(cookie, { command, type, offset: off, length, resolve, reject, covered: 0 });
      const header = requestHeader(flags, type, BigInt(cookie), off, length);
      if (payload && payload.length > 0) {
        this.#socket.cork();
        this.#socket.write(header);
        this.#socket.write(payload);
        this.#socket.uncork();
      } else this.#socket.write(header);
    });
  }

  #failAll(err: HavenError): void {
    if (!this.#closed) this.#closed = err;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(err);
    this.#wakeIfIdle();
  }

  #wakeIfIdle(): void {
    if (this.#pending.size > 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  #take(cookie: number): Pending {
    const p = this.#pending.get(cookie);
    if (!p) throw fail(`NBD server replied to unknown cookie ${cookie}`);
    return p;
  }

  #settle(cookie: number, p: Pending): void {
    this.#pending.delete(cookie);
    if (p.error) p.reject(p.error);
    else if (p.type === Command.READ) {
      if (p.covered !== p.length)
        p.reject(fail(`NBD server answered a read with ${p.covered} of ${p.length} bytes`));
      else p.resolve(p.data ?? Buffer.alloc(0));
    } else if (p.type === Command.BLOCK_STATUS) {
      if (!p.extents?.length) p.reject(fail('NBD server answered block status without extents'));
      else p.resolve(p.extents);
    } else p.resolve(undefined);
    this.#wakeIfIdle();
  }

  async #readLoop(): Promise<void> {
    const reader = this.#reader;
    for (;;) {
      let magicBuf: Buffer;
      try {
        magicBuf = reader.tryRead(4) ?? (await reader.read(4));
      } catch {
        return; // closed; the close handler fails what is pending
      }
      const magic = magicBuf.readUInt32BE(0);
      if (magic === SIMPLE_REPLY_MAGIC) {
        const h = reader.tryRead(12) ?? (await reader.read(12));
        const errno = h.readUInt32BE(0);
        const cookie = Number(h.readBigUInt64BE(4));
        const p = this.#take(cookie);
        if (errno !== 0) p.error = nbdRequestError(p.command, errno, '');
        else if (p.type === Command.READ) {
          if (this.structuredReplies) throw fail('NBD server sent a simple reply to a structured read');
          p.data = Buffer.from(reader.tryRead(p.length) ?? (await reader.read(p.length)));
          p.covered = p.length;
        }
        this.#settle(cookie, p);
        continue;
      }
      if (magic !== STRUCTURED_REPLY_MAGIC || !this.structuredReplies) {
        throw fail(`NBD server sent an unknown reply magic 0x${magic.toString(16)}`);
      }
      const h = reader.tryRead(16) ?? (await reader.read(16));
      const flags = h.readUInt16BE(0);
      const type = h.readUInt16BE(2);
      const cookie = Number(h.readBigUInt64BE(4));
      const length = h.readUInt32BE(12);
      if (length > this.#maxReplyBytes + 8) throw fail(`NBD server sent a ${length}-byte reply chunk`);
      const p = this.#take(cookie);
      const body = length > 0 ? (reader.tryRead(length) ?? (await reader.read(length))) : Buffer.alloc(0);
      this.#chunk(p, type, body);
      if (flags & ReplyFlag.DONE) this.#settle(cookie, p);
    }
  }

  #chunk(p: Pending, type: number, body: Buffer): void {
    const c = new ByteCursor(body);
    if (isReplyTypeError(type)) {
      const errno = c.u32();
      const message = c.string(Math.min(c.u16(), c.remaining));
      p.error ??= nbdRequestError(p.command, errno || 22, message);
      return;
    }
    switch (type) {
      case ReplyType.NONE:
        return;
      case ReplyType.OFFSET_DATA:
      case ReplyType.OFFSET_HOLE: {
        if (p.type !== Command.READ) throw fail(`NBD server sent read data for a ${p.command}`);
        const at = c.u64() - p.offset;
        const size = type === ReplyType.OFFSET_DATA ? c.remaining : c.u32();
        if (at < 0n || at + BigInt(size) > BigInt(p.length))
          throw fail('NBD server sent data outside the read');
        p.data ??= Buffer.alloc(p.length);
        if (type === ReplyType.OFFSET_DATA) body.copy(p.data, Number(at), 8);
        else p.data.fill(0, Number(at), Number(at) + size);
        p.covered += size;
        return;
      }
      case ReplyType.BLOCK_STATUS: {
        if (p.type !== Command.BLOCK_STATUS) throw fail(`NBD server sent block status for a ${p.command}`);
        const id = c.u32();
        if (id !== this.#allocationId) return;
        const extents: BlockExtent[] = [];
        let at = Number(p.offset);
        while (c.remaining >= 8) {
          const length = c.u32();
          const flags = c.u32();
          extents.push({ offset: at, length, flags });
          at += length;
        }
        p.extents = extents;
        return;
      }
      default:
        throw fail(`NBD server sent an unknown reply chunk type ${type}`);
    }
  }
}
