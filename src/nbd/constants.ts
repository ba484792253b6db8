/**
 * Numbers of the NBD protocol, as written in NetworkBlockDevice `doc/proto.md`.
 * Plain `const` objects rather than enums: the runtime strips types only.
 */

/** 'NBDMAGIC', sent first by the server. */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** 'IHAVEOPT': newstyle handshake magic and the prefix of every option. */
export const IHAVEOPT = 0x49484156454f5054n;
/** Prefix of every option reply in fixed newstyle negotiation. */
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const REQUEST_HEADER_SIZE = 28;
export const SIMPLE_REPLY_HEADER_SIZE = 16;
export const STRUCTURED_REPLY_HEADER_SIZE = 20;
export const OPTION_HEADER_SIZE = 16;
export const OPTION_REPLY_HEADER_SIZE = 20;

/** Handshake flags (server → client, 16 bits). */
export const HandshakeFlag = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;

/** Client flags (client → server, 32 bits). */
export const ClientFlag = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;

/** Transmission flags (16 bits). */
export const TransmissionFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

export const Option = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
} as const;

const REP_ERR = 0x80000000;
export const OptionReply = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: REP_ERR + 1,
  ERR_POLICY: REP_ERR + 2,
  ERR_INVALID: REP_ERR + 3,
  ERR_PLATFORM: REP_ERR + 4,
  ERR_TLS_REQD: REP_ERR + 5,
  ERR_UNKNOWN: REP_ERR + 6,
  ERR_SHUTDOWN: REP_ERR + 7,
  ERR_BLOCK_SIZE_REQD: REP_ERR + 8,
  ERR_TOO_BIG: REP_ERR + 9,
} as const;

export function isOptionReplyError(type: number): boolean {
  return type >= REP_ERR;
}

export const Info = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

export const Command = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const CommandFlag = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

export const ReplyFlag = {
  DONE: 1 << 0,
} as const;

export const ReplyType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: (1 << 15) + 1,
  ERROR_OFFSET: (1 << 15) + 2,
} as const;

export function isReplyTypeError(type: number): boolean {
  return (type & (1 << 15)) !== 0;
}

/** Error values carried in replies (errno-like, fixed by the protocol). */
export const NbdErrno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

export const BASE_ALLOCATION = 'base:allocation';

/** base:allocation status flags. */
export const BlockState = {
  HOLE: 1 << 0,
  ZERO: 1 << 1,
} as const;

/** Strings (names, messages) MUST be no longer than this. */
export const MAX_STRING_LENGTH = 4096;
/** The spec's portable payload limit; requests up to this SHOULD NOT be treated as abuse. */
export const DEFAULT_MAX_PAYLOAD = 32 * 1024 * 1024;

/** TLS-PSK suites GnuTLS (qemu, libnbd) and OpenSSL share; Haven uses PSK with TLS 1.2 only. */
export const PSK_CIPHERS =
  'DHE-PSK-AES256-GCM-SHA384:ECDHE-PSK-AES256-CBC-SHA384:PSK-AES256-GCM-SHA384:PSK-AES128-GCM-SHA256';
