/**
 * Replication wire protocol, spoken over mutually authenticated TLS on the
 * replication port (one connection per replicated disk, so a slow or failing
 * replica of one disk never stalls another; the host's bandwidth limit is
 * shared by all of them in the sender).
 *
 * Frame: u32 BE length of what follows, u8 type, payload. Control frames
 * carry UTF-8 JSON; record batches, sync data and hash replies are binary.
 *
 *   sender → receiver           receiver → sender
 *   HELLO {v, diskKey, size}    RESUME {durableSeq}
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

export function encodeFrame(type: number, payload: Buffer | Buffer[]): Buffer[] {
  const parts = Array.isArray(payload) ? payload : [payload];
  const length = 1 + parts.reduce((n, p) => n + p.length, 0);
  if (length > MAX_FRAME_BYTES) {
    throw new HavenError(
      'limit_exceeded',
      `replication frame of ${length} bytes exceeds the ${MAX_FRAME_BYTES}-byte limit`,
      { size: length, limit: MAX_FRAME_BYTES },
    );
  }
  const head = Buffer.allocUnsafe(5);
  head.writeUInt32BE(length, 0);
  head.writeUInt8(type, 4);
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
  #chunks: Buffer[] = [];
  #buffered = 0;

  get buffered(): number {
    return this.#buffered;
  }

  push(chunk: Buffer): Frame[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const frames: Frame[] = [];
    while (this.#buffered >= 5) {
      const head = this.#peek(5);
      const length = head.readUInt32BE(0);
      if (length < 1 || length > MAX_FRAME_BYTES) {
        throw new HavenError('bad_request', `replication frame length ${length} is out of range`, {
          size: length,
          limit: MAX_FRAME_BYTES,
        });
      }
      if (this.#buffered < 4 + length) break;
      const frame = this.#take(4 + length);
      frames.push({ type: frame.readUInt8(4), payload: frame.subarray(5) });
    }
    return frames;
  }

  #peek(n: number): Buffer {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const joined = Buffer.concat(this.#chunks);
    this.#chunks = [joined];
    return joined.subarray(0, n);
  }

  #take(n: number): Buffer {
    const joined = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    const rest = joined.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered = rest.length;
    return joined.subarray(0, n);
  }
}

// ---- compression -----------------------------------------------------------

const compress = promisify(zstdCompress);
const decompress = promisify(zstdDecompress);

/** Compressed body flag of RECORDS and SYNC_DATA payloads. */
const COMPRESSED = 1;
/** SYNC_DATA flag: the range reads as zeroes, no data follows. */
const ZERO_RANGE = 2;

/**
 * zstd-compresses `raw` unless that does not shrink it by at least 1/32
 * (random or already-compressed data): the receiver then skips the work too.
 */
export async function maybeCompress(
  raw: Buffer,
  level: number | null,
): Promise<{ body: Buffer; compressed: boolean }> {
  if (level === null || raw.length < 512) return { body: raw, compressed: false };
  const packed = await compress(raw, { params: { [constants.ZSTD_c_compressionLevel]: level } });
  if (packed.length > raw.length - (raw.length >> 5)) return { body: raw, compressed: false };
  return { body: packed, compressed: true };
}

/**
 * Skips compression attempts while data keeps proving incompressible (random
 * or encrypted disks): after a miss only every 8th block is tried, so a disk
 * full of such data costs no compression CPU, and data that compresses again
 * is noticed within 8 blocks.
 */
export class CompressionProbe {
  readonly level: number | null;
  #skip = 0;

  constructor(level: number | null) {
    this.level = level;
  }

  /** The level to try for the next block, or null to send it as is. */
  next(): number | null {
    if (this.#skip > 0) {
      this.#skip--;
      return null;
    }
    return this.level;
  }

  record(tried: boolean, compressed: boolean): void {
    if (tried && !compressed) this.#skip = 7;
  }
}

async function unpack(body: Buffer, compressed: boolean, rawLength: number): Promise<Buffer> {
  if (!compressed) return body;
  const raw = await decompress(body, { maxOutputLength: rawLength });
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
/** seq u64, time u64, offset u64, length u64, kind u8, data length u32. */
const RECORD_HEAD = 37;

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
  const parts: Buffer[] = [];
  for (const r of records) {
    const data =
      r.kind === 'write'
        ? (r.data ?? Buffer.alloc(0))
        : r.kind === 'marker'
          ? encodeMarker(r.marker)
          : Buffer.alloc(0);
    const head = Buffer.allocUnsafe(RECORD_HEAD);
    writeU64(head, r.seq, 0);
    writeU64(head, r.timeMs, 8);
    writeU64(head, r.offset, 16);
    writeU64(head, r.length, 24);
    head.writeUInt8(KINDS.indexOf(r.kind), 32);
    head.writeUInt32BE(data.length, 33);
    parts.push(head);
    if (data.length > 0) parts.push(data);
  }
  return Buffer.concat(parts);
}

export function decodeRecords(raw: Buffer): JournalRecord[] {
  const out: JournalRecord[] = [];
  let at = 0;
  while (at < raw.length) {
    if (at + RECORD_HEAD > raw.length) throw new HavenError('bad_request', 'record batch is truncated');
    const kind = KINDS[raw.readUInt8(at + 32)];
    const dataLength = raw.readUInt32BE(at + 33);
    if (kind === undefined || at + RECORD_HEAD + dataLength > raw.length) {
      throw new HavenError('bad_request', `record batch is malformed at byte ${at}`);
    }
    const data = raw.subarray(at + RECORD_HEAD, at + RECORD_HEAD + dataLength);
    const record: JournalRecord = {
      seq: readU64(raw, at),
      timeMs: readU64(raw, at + 8),
      offset: readU64(raw, at + 16),
      length: readU64(raw, at + 24),
      kind,
    };
    if (kind === 'write') {
      if (dataLength !== record.length)
        throw new HavenError('bad_request', `write record ${record.seq} is malformed`);
      record.data = data;
    } else if (kind === 'marker') {
      // Senders of this protocol version may predate markers' groupPointId: read them as journal format 1.
      record.marker = decodeMarker(data, 1);
    }
    out.push(record);
    at += RECORD_HEAD + dataLength;
  }
  return out;
}

/** RECORDS payload: u8 flags, u32 raw length, body. */
export async function recordsPayload(
  raw: Buffer,
  level: number | null,
): Promise<{ payload: Buffer[]; compressed: boolean }> {
  const { body, compressed } = await maybeCompress(raw, level);
  const head = Buffer.allocUnsafe(5);
  head.writeUInt8(compressed ? COMPRESSED : 0, 0);
  head.writeUInt32BE(raw.length, 1);
  return { payload: [head, body], compressed };
}

export async function parseRecordsPayload(payload: Buffer): Promise<JournalRecord[]> {
  if (payload.length < 5) throw new HavenError('bad_request', 'record batch frame is truncated');
  const raw = await unpack(
    payload.subarray(5),
    (payload.readUInt8(0) & COMPRESSED) !== 0,
    payload.readUInt32BE(1),
  );
  return decodeRecords(raw);
}

// ---- sync data -----------------------------------------------------------------

/** SYNC_DATA payload: u8 flags, u64 offset, u32 length, body (absent for a zero range). */
export async function syncDataPayload(
  offset: number,
  data: Buffer | null,
  length: number,
  level: number | null,
): Promise<{ payload: Buffer[]; compressed: boolean }> {
  const head = Buffer.allocUnsafe(13);
  writeU64(head, offset, 1);
  head.writeUInt32BE(length, 9);
  if (data === null) {
    head.writeUInt8(ZERO_RANGE, 0);
    return { payload: [head], compressed: false };
  }
  const { body, compressed } = await maybeCompress(data, level);
  head.writeUInt8(compressed ? COMPRESSED : 0, 0);
  return { payload: [head, body], compressed };
}

export async function parseSyncDataPayload(
  payload: Buffer,
): Promise<{ offset: number; data: Buffer | null; length: number }> {
  if (payload.length < 13) throw new HavenError('bad_request', 'sync data frame is truncated');
  const flags = payload.readUInt8(0);
  const offset = readU64(payload, 1);
  const length = payload.readUInt32BE(9);
  if ((flags & ZERO_RANGE) !== 0) return { offset, data: null, length };
  return { offset, data: await unpack(payload.subarray(13), (flags & COMPRESSED) !== 0, length), length };
}

/** HASHES payload: u32 reqId, then 32-byte digests, one per block. */
export function hashesPayload(reqId: number, digests: Buffer[]): Buffer[] {
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(reqId, 0);
  return [head, ...digests];
}

export function parseHashesPayload(payload: Buffer): { reqId: number; digests: Buffer[] } {
  const digests: Buffer[] = [];
  for (let at = 4; at + 32 <= payload.length; at += 32) digests.push(payload.subarray(at, at + 32));
  return { reqId: payload.readUInt32BE(0), digests };
}
