/**
 * Replication wire protocol, spoken over mutually authenticated TLS on the
 * replication port (one connection per replicated disk, so a slow or failing
 * replica of one disk never stalls another; the host's bandwidth limit is
 * shared by all of them in the sender).
 *
 * Frame: u32 BE length of what follows, u8 type, payload (the shared
 * length-prefixed codec). Control frames
 * carry UTF-8 JSON; record batches, sync data and hash replies are binary.
 *
 *   sender → receiver           receiver → sender
 *   HELLO {v, diskKey, size}    RESUME {durableSeq, checksums?}
 *   RECORDS (batch)             ACK {frames, durableSeq}
 *   SYNC_BEGIN {id, kind, ...}  HASHES (reqId + digests)
 *   SYNC_DATA (range)           ERROR {code, message}
 *   SYNC_COMPLETE {id, throughSeq}
 *   HASH_REQUEST {reqId, offset, length, blockSize}
 *   ERROR {code, message}
 *
 * The receiver handles the sender's frames strictly in order and acknowledges
 * with the count of frames handled on this connection plus the sink's durable
 * sequence, so one ACK frees the sender's window and allows journal trimming.
 */
import { promisify } from 'node:util';
import { constants, zstdCompress, zstdDecompress } from 'node:zlib';
import type { JournalRecord, RecordKind } from '../disk/index.ts';
import { decodeMarker, encodeMarker } from '../disk/journal-record.ts';
import { HavenError } from '../errors/index.ts';
import {
  encodeLengthPrefix,
  type FrameLimit,
  LENGTH_PREFIX_BYTES,
  LengthPrefixedDecoder,
} from '../framing/length-prefixed-codec.ts';

export const PROTOCOL_VERSION = 1;
/** Default replication port (ASR's process server uses 9443 too). */
export const DEFAULT_REPLICATION_PORT = 9443;
/** Largest frame accepted: a batch may hold one whole 32 MiB NBD write plus headers. */
export const MAX_FRAME_BYTES = 64 << 20;

export const FrameType = {
  HELLO: 1,
  RESUME: 2,
  RECORDS: 3,
  ACK: 4,
  SYNC_BEGIN: 5,
  SYNC_DATA: 6,
  SYNC_COMPLETE: 7,
  HASH_REQUEST: 8,
  HASHES: 9,
  ERROR: 10,
} as const;

export interface Frame {
  type: number;
  payload: Buffer;
}

export interface HelloMessage {
  v: number;
  diskKey: string;
  sizeBytes: number;
}
export interface ResumeMessage {
  durableSeq: number;
  /**
   * The receiver takes records with the checksums they were journaled with
   * and checks them as it stores them: the sender need not check them as it
   * reads. Absent from older receivers.
   */
  checksums?: boolean;
}
export interface AckMessage {
  /** Frames handled on this connection so far (those the window counts). */
  frames: number;
  durableSeq: number;
}
export interface SyncBeginMessage {
  id: string;
  kind: 'initial' | 'resync' | 'full-resync';
  fromSeq: number;
  regions: { offset: number; length: number }[] | null;
}
export interface SyncCompleteMessage {
  id: string;
  throughSeq: number;
}
export interface HashRequestMessage {
  reqId: number;
  offset: number;
  length: number;
  blockSize: number;
}
export interface ErrorMessage {
  code: string;
  message: string;
}

/** Bytes of the frame type, the first byte of every frame's body. */
const FRAME_TYPE_BYTES = 1;
const FRAME_LIMIT: FrameLimit = { label: 'replication', maxBodyBytes: MAX_FRAME_BYTES };

export function encodeFrame(type: number, payload: Buffer | Buffer[]): Buffer[] {
  const parts = Array.isArray(payload) ? payload : [payload];
  const length = FRAME_TYPE_BYTES + parts.reduce((n, p) => n + p.length, 0);
  const head = encodeLengthPrefix(length, FRAME_LIMIT, FRAME_TYPE_BYTES);
  head.writeUInt8(type, LENGTH_PREFIX_BYTES);
  return [head, ...parts];
}

export function jsonFrame(type: number, message: object): Buffer[] {
  return encodeFrame(type, Buffer.from(JSON.stringify(message), 'utf8'));
}

export function parseJson<T>(frame: Frame): T {
  try {
    return JSON.parse(frame.payload.toString('utf8')) as T;
  } catch {
    throw new HavenError('bad_request', `replication frame of type ${frame.type} is not valid JSON`, {
      type: frame.type,
    });
  }
}

/** Splits a byte stream into frames; throws on an oversize frame (the connection must then close). */
export class FrameReader {
  readonly #bodies = new LengthPrefixedDecoder({
    ...FRAME_LIMIT,
    minBodyBytes: FRAME_TYPE_BYTES,
    outOfRange: (length, limit) =>
      new HavenError('bad_request', `replication frame length ${length} is out of range`, {
        size: length,
        limit,
      }),
  });

  push(chunk: Buffer): Frame[] {
    return this.#bodies
      .push(chunk)
      .map((body) => ({ type: body.readUInt8(0), payload: body.subarray(FRAME_TYPE_BYTES) }));
  }
}

// ---- compression -----------------------------------------------------------

const compress = promisify(zstdCompress);
const decompress = promisify(zstdDecompress);

/** Bits of the flags byte that starts RECORDS and SYNC_DATA payloads. */
const PayloadFlag = {
  NONE: 0,
  /** The body is zstd-compressed. */
  COMPRESSED: 1 << 0,
  /** SYNC_DATA only: the range reads as zeroes, no body follows. */
  ZERO_RANGE: 1 << 1,
} as const;

/**
 * Output chunk of a zstd call that holds the whole body: with the default
 * 16 KiB, a 1 MiB batch costs 64 hand-offs from the thread pool and a copy.
 */
function zstdChunkBytes(rawLength: number): number {
  return Math.max(constants.Z_MIN_CHUNK, Math.min(rawLength + 1024, MAX_FRAME_BYTES));
}

/** Smaller bodies are sent as they are: compressing them saves too little to pay. */
const MIN_COMPRESSIBLE_BYTES = 512;
/** Compression must save at least 1/2^this of a body to be used. */
const MIN_SAVING_SHIFT = 5;
/** After a block that did not compress, the next try comes after about this many bytes... */
const PROBE_INTERVAL_BYTES = 8 << 20;
/** ...counting a block of unknown size (a record batch) as this many. */
const PROBE_BLOCK_BYTES = 1 << 20;

/**
 * zstd-compresses `raw` unless that does not shrink it by at least 1/32
 * (random or already-compressed data): the receiver then skips the work too.
 */
export async function maybeCompress(
  raw: Buffer,
  level: number | null,
): Promise<{ body: Buffer; compressed: boolean }> {
  if (level === null || raw.length < MIN_COMPRESSIBLE_BYTES) return { body: raw, compressed: false };
  const packed = await compress(raw, {
    params: { [constants.ZSTD_c_compressionLevel]: level },
    chunkSize: zstdChunkBytes(raw.length),
  });
  if (packed.length > raw.length - (raw.length >> MIN_SAVING_SHIFT)) return { body: raw, compressed: false };
  return { body: packed, compressed: true };
}

/**
 * Skips compression attempts while data keeps proving incompressible (random
 * or encrypted disks): after a miss only about every 8 MiB is tried (every
 * 8th 1 MiB block, every 128th 64 KiB block), so a disk full of such data
 * costs no compression CPU, and data that compresses again is noticed within
 * 8 MiB.
 */
export class CompressionProbe {
  readonly level: number | null;
  #skipBytes = 0;
  #triedBytes = PROBE_BLOCK_BYTES;

  constructor(level: number | null) {
    this.level = level;
  }

  /** The level to try for the next block of `bytes`, or null to send it as is. */
  next(bytes = PROBE_BLOCK_BYTES): number | null {
    if (this.#skipBytes > 0) {
      this.#skipBytes -= bytes;
      return null;
    }
    this.#triedBytes = bytes;
    return this.level;
  }

  record(tried: boolean, compressed: boolean): void {
    if (tried && !compressed) this.#skipBytes = PROBE_INTERVAL_BYTES - this.#triedBytes;
  }
}

async function unpack(body: Buffer, compressed: boolean, rawLength: number): Promise<Buffer> {
  if (!compressed) return body;
  const raw = await decompress(body, { maxOutputLength: rawLength, chunkSize: zstdChunkBytes(rawLength) });
  if (raw.length !== rawLength) {
    throw new HavenError(
      'bad_request',
      `replication frame decompressed to ${raw.length} bytes, not ${rawLength}`,
    );
  }
  return raw;
}

// ---- record batches ----------------------------------------------------------

const KINDS: readonly RecordKind[] = ['write', 'trim', 'zero', 'flush', 'marker'];
/**
 * Byte offsets in a record's head: seq u64, time u64, offset u64, length u64,
 * kind u8, data length u32; then, if the kind has `KIND_CHECKSUM` set, the
 * record's journaled checksum u32 (only to a receiver that asked for them).
 */
const RecordHead = {
  SEQ: 0,
  TIME: 8,
  OFFSET: 16,
  LENGTH: 24,
  KIND: 32,
  DATA_LENGTH: 33,
  BYTES: 37,
} as const;
const KIND_CHECKSUM = 0x80;
const CHECKSUM_BYTES = 4;

function writeU64(buf: Buffer, value: number, at: number): void {
  buf.writeBigUInt64BE(BigInt(value), at);
}
function readU64(buf: Buffer, at: number): number {
  const v = buf.readBigUInt64BE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new HavenError('bad_request', 'replication value too large');
  return Number(v);
}

/** Serialises records (uncompressed): the journal's records, without its on-disk checksums (TLS protects them). */
export function encodeRecords(records: readonly JournalRecord[]): Buffer {
  return Buffer.concat(encodeRecordParts(records));
}

/**
 * `encodeRecords` as the parts to write in order: the records' data is not
 * copied. `checksums`: the records' journaled checksums go along (a marker's
 * never does: the receiver reads markers as format 1, which may add to them).
 */
export function encodeRecordParts(records: readonly JournalRecord[], checksums = false): Buffer[] {
  const parts: Buffer[] = [];
  for (const r of records) {
    const crc = checksums && r.kind !== 'marker' ? r.crc : undefined;
    const data =
      r.kind === 'write'
        ? (r.data ?? Buffer.alloc(0))
        : r.kind === 'marker'
          ? encodeMarker(r.marker)
          : Buffer.alloc(0);
    const head = Buffer.allocUnsafe(RecordHead.BYTES + (crc === undefined ? 0 : CHECKSUM_BYTES));
    writeU64(head, r.seq, RecordHead.SEQ);
    writeU64(head, r.timeMs, RecordHead.TIME);
    writeU64(head, r.offset, RecordHead.OFFSET);
    writeU64(head, r.length, RecordHead.LENGTH);
    head.writeUInt8(KINDS.indexOf(r.kind) | (crc === undefined ? 0 : KIND_CHECKSUM), RecordHead.KIND);
    head.writeUInt32BE(data.length, RecordHead.DATA_LENGTH);
    if (crc !== undefined) head.writeUInt32BE(crc, RecordHead.BYTES);
    parts.push(head);
    if (data.length > 0) parts.push(data);
  }
  return parts;
}

export function decodeRecords(raw: Buffer): JournalRecord[] {
  const out: JournalRecord[] = [];
  let at = 0;
  while (at < raw.length) {
    if (at + RecordHead.BYTES > raw.length) {
      throw new HavenError('bad_request', 'record batch is truncated');
    }
    const kindByte = raw.readUInt8(at + RecordHead.KIND);
    const kind = KINDS[kindByte & ~KIND_CHECKSUM];
    const withChecksum = (kindByte & KIND_CHECKSUM) !== 0;
    const dataLength = raw.readUInt32BE(at + RecordHead.DATA_LENGTH);
    const dataAt = at + RecordHead.BYTES + (withChecksum ? CHECKSUM_BYTES : 0);
    if (kind === undefined || (withChecksum && kind === 'marker') || dataAt + dataLength > raw.length) {
      throw new HavenError('bad_request', `record batch is malformed at byte ${at}`);
    }
    const data = raw.subarray(dataAt, dataAt + dataLength);
    const record: JournalRecord = {
      seq: readU64(raw, at + RecordHead.SEQ),
      timeMs: readU64(raw, at + RecordHead.TIME),
      offset: readU64(raw, at + RecordHead.OFFSET),
      length: readU64(raw, at + RecordHead.LENGTH),
      kind,
    };
    if (withChecksum) record.crc = raw.readUInt32BE(at + RecordHead.BYTES);
    if (kind === 'write') {
      if (dataLength !== record.length)
        throw new HavenError('bad_request', `write record ${record.seq} is malformed`);
      record.data = data;
    } else if (kind === 'marker') {
      // Senders of this protocol version may predate markers' groupPointId: read them as journal format 1.
      record.marker = decodeMarker(data, 1);
    }
    out.push(record);
    at = dataAt + dataLength;
  }
  return out;
}

/** RECORDS payload: u8 flags, u32 raw length, body. */
const RECORDS_HEAD_BYTES = 5;

/** `raw` as one buffer or as parts (`encodeRecordParts`): parts sent uncompressed are not copied. */
export async function recordsPayload(
  raw: Buffer | readonly Buffer[],
  level: number | null,
): Promise<{ payload: Buffer[]; compressed: boolean }> {
  const parts = Buffer.isBuffer(raw) ? [raw] : raw;
  const rawLength = parts.reduce((n, p) => n + p.length, 0);
  const head = Buffer.allocUnsafe(RECORDS_HEAD_BYTES);
  head.writeUInt32BE(rawLength, 1);
  if (level !== null && rawLength >= MIN_COMPRESSIBLE_BYTES) {
    const { body, compressed } = await maybeCompress(Buffer.concat(parts), level);
    head.writeUInt8(compressed ? PayloadFlag.COMPRESSED : PayloadFlag.NONE, 0);
    return { payload: [head, body], compressed };
  }
  head.writeUInt8(PayloadFlag.NONE, 0);
  return { payload: [head, ...parts], compressed: false };
}

export async function parseRecordsPayload(payload: Buffer): Promise<JournalRecord[]> {
  if (payload.length < RECORDS_HEAD_BYTES) {
    throw new HavenError('bad_request', 'record batch frame is truncated');
  }
  const raw = await unpack(
    payload.subarray(RECORDS_HEAD_BYTES),
    (payload.readUInt8(0) & PayloadFlag.COMPRESSED) !== 0,
    payload.readUInt32BE(1),
  );
  return decodeRecords(raw);
}

// ---- sync data -----------------------------------------------------------------

/** SYNC_DATA payload: u8 flags, u64 offset, u32 length, body (absent for a zero range). */
const SYNC_DATA_HEAD_BYTES = 13;

export async function syncDataPayload(
  offset: number,
  data: Buffer | null,
  length: number,
  level: number | null,
): Promise<{ payload: Buffer[]; compressed: boolean }> {
  const head = Buffer.allocUnsafe(SYNC_DATA_HEAD_BYTES);
  writeU64(head, offset, 1);
  head.writeUInt32BE(length, 9);
  if (data === null) {
    head.writeUInt8(PayloadFlag.ZERO_RANGE, 0);
    return { payload: [head], compressed: false };
  }
  const { body, compressed } = await maybeCompress(data, level);
  head.writeUInt8(compressed ? PayloadFlag.COMPRESSED : PayloadFlag.NONE, 0);
  return { payload: [head, body], compressed };
}

export async function parseSyncDataPayload(
  payload: Buffer,
): Promise<{ offset: number; data: Buffer | null; length: number }> {
  if (payload.length < SYNC_DATA_HEAD_BYTES) {
    throw new HavenError('bad_request', 'sync data frame is truncated');
  }
  const flags = payload.readUInt8(0);
  const offset = readU64(payload, 1);
  const length = payload.readUInt32BE(9);
  if ((flags & PayloadFlag.ZERO_RANGE) !== 0) return { offset, data: null, length };
  const body = payload.subarray(SYNC_DATA_HEAD_BYTES);
  return { offset, data: await unpack(body, (flags & PayloadFlag.COMPRESSED) !== 0, length), length };
}

/** HASHES payload: u32 reqId, then SHA-256 digests, one per block. */
const REQ_ID_BYTES = 4;
export const DIGEST_BYTES = 32;

export function hashesPayload(reqId: number, digests: Buffer[]): Buffer[] {
  const head = Buffer.allocUnsafe(REQ_ID_BYTES);
  head.writeUInt32BE(reqId, 0);
  return [head, ...digests];
}

export function parseHashesPayload(payload: Buffer): { reqId: number; digests: Buffer[] } {
  const digests: Buffer[] = [];
  for (let at = REQ_ID_BYTES; at + DIGEST_BYTES <= payload.length; at += DIGEST_BYTES) {
    digests.push(payload.subarray(at, at + DIGEST_BYTES));
  }
  return { reqId: payload.readUInt32BE(0), digests };
}
