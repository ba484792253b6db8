/**
 * Server side of the fixed newstyle handshake and option haggling.
 * Returns the export the client entered transmission with, or null when the
 * client aborted. Throws ProtocolViolation when the only allowed answer is a
 * hard disconnect (bad magic, unknown client flags, EXPORT_NAME we cannot serve).
 */
import { HavenError } from '../errors/index.ts';
import type { BlockBackend } from './block-backend.ts';
import { ByteCursor } from './byte-cursor.ts';
import {
  BASE_ALLOCATION,
  ClientFlag,
  HandshakeFlag,
  IHAVEOPT,
  Info,
  MAX_STRING_LENGTH,
  NBD_MAGIC,
  OPTION_HEADER_SIZE,
  Option,
  OptionReply,
  TransmissionFlag,
} from './constants.ts';
import { optionReply } from './messages.ts';
import type { StreamReader } from './stream-reader.ts';

/** One export as the server offers it. */
export interface NbdExport {
  backend: BlockBackend;
  description?: string;
  /**
   * Whether FLUSH/FUA on one connection covers writes made on others, i.e.
   * the backend has one shared cache. Default true.
   */
  multiConn?: boolean;
  /** Served only to connections that authenticated with this TLS-PSK identity. */
  pskIdentity?: string;
  /**
   * Served only to connections whose client certificate (verified against
   * the server's CA) names this as its subject CN; others are answered as
   * for an unknown export.
   */
  certificateName?: string;
  /** Called when a connection enters transmission with this export. */
  onConnectionOpened?: () => void;
  /** Called when a connection that served this export ends, however it ends. */
  onConnectionClosed?: () => void;
}

export interface ExportLookup {
  /** Resolves a client-given name ('' = the default export) to the canonical name. */
  lookup(name: string): { name: string; exp: NbdExport } | undefined;
  list(): Array<[string, NbdExport]>;
}

export interface HandshakePolicy {
  exports: ExportLookup;
  tlsAvailable: boolean;
  tlsRequired: boolean;
  maxPayload: number;
  shuttingDown(): boolean;
}

/** The connection as the handshake sees it; `reader` changes after STARTTLS. */
export interface HandshakeIo {
  readonly reader: StreamReader;
  readonly tlsActive: boolean;
  write(buf: Buffer): void;
  startTls(): Promise<void>;
}

export interface Negotiated {
  name: string;
  exp: NbdExport;
  structuredReplies: boolean;
  /** Context id of base:allocation, or 0 when the client selected none for this export. */
  allocationContextId: number;
  transmissionFlags: number;
}

export class ProtocolViolation extends HavenError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('bad_request', message, details);
  }
}

/** Option data longer than this is treated as abuse (names are at most 4 KiB). */
export const MAX_OPTION_LENGTH = 64 * 1024;
export const ALLOCATION_CONTEXT_ID = 1;

export function transmissionFlags(exp: NbdExport, structuredReplies: boolean): number {
  const b = exp.backend;
  let flags = TransmissionFlag.HAS_FLAGS | TransmissionFlag.SEND_FLUSH | TransmissionFlag.SEND_FUA;
  if (b.readOnly) flags |= TransmissionFlag.READ_ONLY;
  else {
    if (b.canTrim) flags |= TransmissionFlag.SEND_TRIM;
    if (b.canWriteZeroes) flags |= TransmissionFlag.SEND_WRITE_ZEROES;
  }
  // Our READ reply is always a single content chunk, so DF costs nothing.
  if (structuredReplies) flags |= TransmissionFlag.SEND_DF;
  if (exp.multiConn !== false) flags |= TransmissionFlag.CAN_MULTI_CONN;
  return flags;
}

interface State {
  structuredReplies: boolean;
  meta: { exportName: string; selected: boolean } | null;
}

export async function negotiate(io: HandshakeIo, policy: HandshakePolicy): Promise<Negotiated | null> {
  const greeting = Buffer.allocUnsafe(18);
  greeting.writeBigUInt64BE(NBD_MAGIC, 0);
  greeting.writeBigUInt64BE(IHAVEOPT, 8);
  greeting.writeUInt16BE(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES, 16);
  io.write(greeting);

  const clientFlags = (await io.reader.read(4)).readUInt32BE(0);
  if ((clientFlags & ~(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES)) !== 0) {
    throw new ProtocolViolation(`NBD client sent unknown client flags 0x${clientFlags.toString(16)}`);
  }
  const noZeroes = (clientFlags & ClientFlag.NO_ZEROES) !== 0;
  if (policy.tlsRequired && (clientFlags & ClientFlag.FIXED_NEWSTYLE) === 0) {
    throw new ProtocolViolation('NBD client does not speak fixed newstyle, which TLS requires');
  }

  const state: State = { structuredReplies: false, meta: null };
  for (;;) {
    const header = await io.reader.read(OPTION_HEADER_SIZE);
    if (header.readBigUInt64BE(0) !== IHAVEOPT)
      throw new ProtocolViolation('NBD option without IHAVEOPT magic');
    const option = header.readUInt32BE(8);
    const length = header.readUInt32BE(12);
    if (length > MAX_OPTION_LENGTH) {
      throw new ProtocolViolation(
        `NBD option ${option} carries ${length} bytes, more than ${MAX_OPTION_LENGTH}`,
      );
    }
    const data = length > 0 ? await io.reader.read(length) : Buffer.alloc(0);
    const reply = (type: number, payload?: Buffer) => io.write(optionReply(option, type, payload));
    const fail = (type: number, message: string) => reply(type, Buffer.from(message, 'utf8'));
    /** The parsed request and the export it names; undefined once the option has failed (malformed, unknown export). */
    const withExport = <R extends { name: string }>(parsed: R | string) => {
      if (typeof parsed === 'string') return void fail(OptionReply.ERR_INVALID, parsed);
      const found = policy.exports.lookup(parsed.name);
      if (!found) return void fail(OptionReply.ERR_UNKNOWN, `export '${parsed.name}' does not exist`);
      return { parsed, found };
    };

    if (option === Option.ABORT) {
      reply(OptionReply.ACK);
      return null;
    }
    if (policy.shuttingDown()) {
      if (option === Option.EXPORT_NAME) throw new ProtocolViolation('NBD server is shutting down');
      fail(OptionReply.ERR_SHUTDOWN, 'server is shutting down');
      continue;
    }
    if (policy.tlsRequired && !io.tlsActive && option !== Option.STARTTLS) {
      if (option === Option.EXPORT_NAME)
        throw new ProtocolViolation('NBD_OPT_EXPORT_NAME before the required TLS');
      fail(OptionReply.ERR_TLS_REQD, 'this server requires TLS: send NBD_OPT_STARTTLS first');
      continue;
    }

    switch (option) {
      case Option.EXPORT_NAME: {
        const found = policy.exports.lookup(data.toString('utf8'));
        if (!found) throw new ProtocolViolation('NBD_OPT_EXPORT_NAME names an unknown export');
        const negotiated = finish(found, state);
        const out = Buffer.alloc(noZeroes ? 10 : 134);
        out.writeBigUInt64BE(BigInt(found.exp.backend.size), 0);
        out.writeUInt16BE(negotiated.transmissionFlags, 8);
        io.write(out);
        return negotiated;
      }
      case Option.LIST: {
        if (length !== 0) {
          fail(OptionReply.ERR_INVALID, 'NBD_OPT_LIST takes no data');
          break;
        }
        for (const [name, exp] of policy.exports.list()) {
          const nameBytes = Buffer.from(name, 'utf8');
          const desc = Buffer.from(exp.description ?? '', 'utf8');
          const payload = Buffer.allocUnsafe(4 + nameBytes.length + desc.length);
          payload.writeUInt32BE(nameBytes.length, 0);
          nameBytes.copy(payload, 4);
          desc.copy(payload, 4 + nameBytes.length);
          reply(OptionReply.SERVER, payload);
        }
        reply(OptionReply.ACK);
        break;
      }
      case Option.STARTTLS: {
        if (length !== 0) fail(OptionReply.ERR_INVALID, 'NBD_OPT_STARTTLS takes no data');
        else if (!policy.tlsAvailable) fail(OptionReply.ERR_POLICY, 'TLS is not configured on this server');
        else if (io.tlsActive) fail(OptionReply.ERR_INVALID, 'TLS is already active');
        else {
          reply(OptionReply.ACK);
          await io.startTls();
          // The spec forbids keeping negotiation state across STARTTLS.
          state.structuredReplies = false;
          state.meta = null;
        }
        break;
      }
      case Option.INFO:
      case Option.GO: {
        const requested = withExport(parseInfoRequest(data));
        if (!requested) break;
        const { parsed, found } = requested;
        const negotiated = finish(found, state);
        const exportInfo = Buffer.allocUnsafe(12);
        exportInfo.writeUInt16BE(Info.EXPORT, 0);
        exportInfo.writeBigUInt64BE(BigInt(found.exp.backend.size), 2);
        exportInfo.writeUInt16BE(negotiated.transmissionFlags, 10);
        reply(OptionReply.INFO, exportInfo);
        // Always sent: clients ignore information they did not ask for.
        const blockSize = Buffer.allocUnsafe(14);
        blockSize.writeUInt16BE(Info.BLOCK_SIZE, 0);
        blockSize.writeUInt32BE(1, 2);
        blockSize.writeUInt32BE(4096, 6);
        blockSize.writeUInt32BE(policy.maxPayload, 10);
        reply(OptionReply.INFO, blockSize);
        if (parsed.requests.includes(Info.NAME)) reply(OptionReply.INFO, infoString(Info.NAME, found.name));
        if (parsed.requests.includes(Info.DESCRIPTION) && found.exp.description !== undefined) {
          reply(OptionReply.INFO, infoString(Info.DESCRIPTION, found.exp.description));
        }
        reply(OptionReply.ACK);
        if (option === Option.GO) return negotiated;
        break;
      }
      case Option.STRUCTURED_REPLY: {
        if (length !== 0) fail(OptionReply.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        else {
          state.structuredReplies = true;
          reply(OptionReply.ACK);
        }
        break;
      }
      case Option.LIST_META_CONTEXT:
      case Option.SET_META_CONTEXT: {
        const isSet = option === Option.SET_META_CONTEXT;
        // SET replaces the selection even when it fails.
        if (isSet) state.meta = null;
        if (!state.structuredReplies) {
          fail(OptionReply.ERR_INVALID, 'negotiate NBD_OPT_STRUCTURED_REPLY before metadata contexts');
          break;
        }
        const requested = withExport(parseMetaRequest(data));
        if (!requested) break;
        const { parsed, found } = requested;
        const matches = isSet
          ? parsed.queries.includes(BASE_ALLOCATION)
          : parsed.queries.length === 0 || parsed.queries.some((q) => q === 'base:' || q === BASE_ALLOCATION);
        if (matches) {
          const name = Buffer.from(BASE_ALLOCATION, 'utf8');
          const payload = Buffer.allocUnsafe(4 + name.length);
          payload.writeUInt32BE(isSet ? ALLOCATION_CONTEXT_ID : 0, 0);
          name.copy(payload, 4);
          reply(OptionReply.META_CONTEXT, payload);
        }
        if (isSet) state.meta = { exportName: found.name, selected: matches };
        reply(OptionReply.ACK);
        break;
      }
      default:
        fail(OptionReply.ERR_UNSUP, `option ${option} is not supported`);
    }
  }
}

function finish(found: { name: string; exp: NbdExport }, state: State): Negotiated {
  const meta = state.meta;
  return {
    name: found.name,
    exp: found.exp,
    structuredReplies: state.structuredReplies,
    allocationContextId:
      state.structuredReplies && meta?.selected && meta.exportName === found.name ? ALLOCATION_CONTEXT_ID : 0,
    transmissionFlags: transmissionFlags(found.exp, state.structuredReplies),
  };
}

function infoString(type: number, s: string): Buffer {
  const bytes = Buffer.from(s, 'utf8');
  const out = Buffer.allocUnsafe(2 + bytes.length);
  out.writeUInt16BE(type, 0);
  bytes.copy(out, 2);
  return out;
}

function readName(c: ByteCursor): string {
  const length = c.u32();
  if (length > MAX_STRING_LENGTH) throw new ProtocolViolation(`name of ${length} bytes is longer than 4096`);
  return c.string(length);
}

/** Returns the parsed request or an error message for ERR_INVALID. */
function parseInfoRequest(data: Buffer): { name: string; requests: number[] } | string {
  try {
    const c = new ByteCursor(data);
    const name = readName(c);
    const count = c.u16();
    const requests: number[] = [];
    for (let i = 0; i < count; i++) requests.push(c.u16());
    if (c.remaining !== 0) return `option data has ${c.remaining} trailing bytes`;
    return { name, requests };
  } catch (err) {
    return (err as Error).message;
  }
}

function parseMetaRequest(data: Buffer): { name: string; queries: string[] } | string {
  try {
    const c = new ByteCursor(data);
    const name = readName(c);
    const count = c.u32();
    if (count > 1024) return `${count} queries is too many`;
    const queries: string[] = [];
    for (let i = 0; i < count; i++) queries.push(readName(c));
    if (c.remaining !== 0) return `option data has ${c.remaining} trailing bytes`;
    return { name, queries };
  } catch (err) {
    return (err as Error).message;
  }
}
