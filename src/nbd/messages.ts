/**
 * Encoders for the fixed-layout NBD messages, shared by server and client.
 * Every multi-byte field is big-endian (network order).
 */
import {
  IHAVEOPT,
  OPTION_HEADER_SIZE,
  OPTION_REPLY_HEADER_SIZE,
  OPTION_REPLY_MAGIC,
  REQUEST_HEADER_SIZE,
  REQUEST_MAGIC,
  ReplyFlag,
  ReplyType,
  SIMPLE_REPLY_HEADER_SIZE,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_HEADER_SIZE,
  STRUCTURED_REPLY_MAGIC,
} from './constants.ts';

const EMPTY: Buffer = Buffer.alloc(0);

export function optionRequest(option: number, data: Buffer = EMPTY): Buffer {
  const out = Buffer.allocUnsafe(OPTION_HEADER_SIZE + data.length);
  out.writeBigUInt64BE(IHAVEOPT, 0);
  out.writeUInt32BE(option, 8);
  out.writeUInt32BE(data.length, 12);
  data.copy(out, OPTION_HEADER_SIZE);
  return out;
}

export function optionReply(option: number, type: number, data: Buffer = EMPTY): Buffer {
  const out = Buffer.allocUnsafe(OPTION_REPLY_HEADER_SIZE + data.length);
  out.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  out.writeUInt32BE(option, 8);
  out.writeUInt32BE(type >>> 0, 12);
  out.writeUInt32BE(data.length, 16);
  data.copy(out, OPTION_REPLY_HEADER_SIZE);
  return out;
}

/** A string preceded by its 32-bit byte length, as in option data. */
export function lengthPrefixed(s: string): Buffer {
  const bytes = Buffer.from(s, 'utf8');
  const out = Buffer.allocUnsafe(4 + bytes.length);
  out.writeUInt32BE(bytes.length, 0);
  bytes.copy(out, 4);
  return out;
}

export function requestHeader(
  flags: number,
  type: number,
  cookie: bigint,
  offset: bigint,
  length: number,
): Buffer {
  const out = Buffer.allocUnsafe(REQUEST_HEADER_SIZE);
  out.writeUInt32BE(REQUEST_MAGIC, 0);
  out.writeUInt16BE(flags, 4);
  out.writeUInt16BE(type, 6);
  out.writeBigUInt64BE(cookie, 8);
  out.writeBigUInt64BE(offset, 16);
  out.writeUInt32BE(length, 24);
  return out;
}

export function simpleReply(cookie: Buffer, error: number): Buffer {
  const out = Buffer.allocUnsafe(SIMPLE_REPLY_HEADER_SIZE);
  out.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  out.writeUInt32BE(error, 4);
  cookie.copy(out, 8, 0, 8);
  return out;
}

/** A structured reply chunk header; `extra` bytes of payload follow it in the same buffer. */
export function chunkHeader(cookie: Buffer, flags: number, type: number, length: number, extra = 0): Buffer {
  const out = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER_SIZE + extra);
  out.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  out.writeUInt16BE(flags, 4);
  out.writeUInt16BE(type, 6);
  cookie.copy(out, 8, 0, 8);
  out.writeUInt32BE(length, 16);
  return out;
}

/** A final NBD_REPLY_TYPE_ERROR chunk with a human-readable message. */
export function errorChunk(cookie: Buffer, errno: number, message: string): Buffer {
  const text = Buffer.from(message, 'utf8').subarray(0, 4096);
  const out = chunkHeader(cookie, ReplyFlag.DONE, ReplyType.ERROR, 6 + text.length, 6 + text.length);
  out.writeUInt32BE(errno, STRUCTURED_REPLY_HEADER_SIZE);
  out.writeUInt16BE(text.length, STRUCTURED_REPLY_HEADER_SIZE + 4);
  text.copy(out, STRUCTURED_REPLY_HEADER_SIZE + 6);
  return out;
}

export function doneChunk(cookie: Buffer): Buffer {
  return chunkHeader(cookie, ReplyFlag.DONE, ReplyType.NONE, 0);
}
