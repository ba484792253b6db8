import { crc32 } from 'node:zlib';
import { HavenError } from '../errors/index.ts';

/**
 * On-disk record format of the write journal (little-endian):
 *
 *   0  u32 magic 'HVJ2'        24 u64 offset
 *   4  u8  kind, 3 reserved    32 u64 length (bytes of the disk covered)
 *   8  u64 sequence            40 u32 data length
 *   16 u64 time (ms)           44 u32 crc32 over bytes 0..43 and the data
 *
 * followed by the data: the bytes written for `write`, a JSON marker for
 * `marker`, nothing for the others. The checksum lets recovery tell a torn
 * tail from a complete record.
 *
 * Format 1 ('HVJ1') has the same layout; its markers had no `groupPointId`
 * (see `legacyGroupPointId`). Both are read, so journals and replica segments
 * written before stay readable; only format 2 is written.
 */
export type RecordFormat = 1 | 2;
const magics: Record<RecordFormat, number> = { 1: 0x314a5648, 2: 0x324a5648 };
/** The bytes every format's magic starts with ('HVJ'), to find where a record may begin. */
export const MAGIC_PREFIX = Buffer.from('HVJ', 'latin1');
export const HEADER_SIZE = 48;

export type RecordKind = 'write' | 'trim' | 'zero' | 'flush' | 'marker';

const kindCodes: Record<RecordKind, number> = { write: 1, trim: 2, zero: 3, flush: 4, marker: 5 };
const kindsByCode: readonly (RecordKind | undefined)[] = [
  undefined,
  'write',
  'trim',
  'zero',
  'flush',
  'marker',
];

export type MarkerType = 'app-consistent' | 'group' | 'resync';

export interface Marker {
  /** app-consistent: one machine's application quiesced; group: a multi-machine point; resync: journal resumed after bitmap mode. */
  type: MarkerType;
  id: string;
  /** For people; nothing reads meaning from it. */
  label?: string;
  /** The group cut (multi-machine point) the marker belongs to. */
  groupPointId?: string;
}

/** How the host disk service labelled an app-consistent marker of a group cut in format 1, followed by the cut's id. */
const LEGACY_APP_CONSISTENT_GROUP_LABEL = 'app-consistent group ';

/**
 * A format-1 marker's group cut: its id, for group markers and for
 * app-consistent markers labelled as part of a group (the only record of
 * their membership then).
 */
function legacyGroupPointId(marker: Marker): string | undefined {
  const inGroup =
    marker.type === 'group' ||
    (marker.type === 'app-consistent' && (marker.label ?? '').startsWith(LEGACY_APP_CONSISTENT_GROUP_LABEL));
  return inGroup ? marker.id : undefined;
}

export function encodeMarker(marker: Marker | undefined): Buffer {
  return Buffer.from(JSON.stringify(marker ?? null));
}

/** Parses a marker payload (throws on malformed JSON); a format-1 marker gets the `groupPointId` it implied. */
export function decodeMarker(payload: Buffer, format: RecordFormat): Marker {
  const marker = JSON.parse(payload.toString('utf8')) as Marker;
  if (format === 1 && marker !== null && marker.groupPointId === undefined) {
    const groupPointId = legacyGroupPointId(marker);
    if (groupPointId !== undefined) marker.groupPointId = groupPointId;
  }
  return marker;
}

export interface JournalRecord {
  seq: number;
  timeMs: number;
  kind: RecordKind;
  offset: number;
  length: number;
  /** The written bytes, for `write` records. */
  data?: Buffer;
  marker?: Marker;
  /**
   * The checksum the record was journaled with, not checked yet: a reader
   * that leaves the check to the far end (the sender) carries it, and
   * `encodeRecord` checks it where the record is stored again.
   */
  crc?: number;
}

/** How a reader treats records' checksums: check each, or carry it unchecked (`JournalRecord.crc`). */
export type ChecksumMode = 'verify' | 'carry';

const TWO_32 = 2 ** 32;

function writeU64(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32LE(value % TWO_32, at);
  buf.writeUInt32LE(Math.floor(value / TWO_32), at + 4);
}

function readU64(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * TWO_32;
}

/**
 * Encodes a record as [header, data?] so the data is written without a copy.
 * A record that carries its journaled checksum must come out with the same
 * one: else it was damaged since it was journaled, and this throws.
 */
export function encodeRecord(record: JournalRecord): Buffer[] {
  const payload =
    record.kind === 'write'
      ? (record.data ?? Buffer.alloc(0))
      : record.kind === 'marker'
        ? encodeMarker(record.marker)
        : Buffer.alloc(0);
  const header = Buffer.allocUnsafe(HEADER_SIZE);
  header.writeUInt32LE(magics[2], 0);
  header.writeUInt32LE(kindCodes[record.kind], 4);
  writeU64(header, record.seq, 8);
  writeU64(header, record.timeMs, 16);
  writeU64(header, record.offset, 24);
  writeU64(header, record.length, 32);
  header.writeUInt32LE(payload.length, 40);
  const crc = crc32(payload, crc32(header.subarray(0, 44)));
  if (record.crc !== undefined && record.crc !== crc) {
    throw new HavenError(
      'internal',
      `journal record ${record.seq} does not match the checksum it was journaled with: it was damaged after it was written`,
      { kind: 'journal_corrupt', seq: record.seq },
    );
  }
  header.writeUInt32LE(crc, 44);
  return payload.length > 0 ? [header, payload] : [header];
}

export function recordSize(record: Pick<JournalRecord, 'kind' | 'data'>, markerBytes = 0): number {
  return HEADER_SIZE + (record.kind === 'write' ? (record.data?.length ?? 0) : markerBytes);
}

export interface RecordHeader {
  format: RecordFormat;
  kind: RecordKind;
  seq: number;
  timeMs: number;
  offset: number;
  length: number;
  dataLength: number;
  crc: number;
}

/** Parses a header; returns null when it is not a well-formed header. */
export function parseHeader(buf: Buffer): RecordHeader | null {
  if (buf.length < HEADER_SIZE) return null;
  const magic = buf.readUInt32LE(0);
  const format = magic === magics[2] ? 2 : magic === magics[1] ? 1 : null;
  const kind = kindsByCode[buf.readUInt32LE(4)];
  if (format === null || kind === undefined) return null;
  return {
    format,
    kind,
    seq: readU64(buf, 8),
    timeMs: readU64(buf, 16),
    offset: readU64(buf, 24),
    length: readU64(buf, 32),
    dataLength: buf.readUInt32LE(40),
    crc: buf.readUInt32LE(44),
  };
}

/**
 * Checks the checksum and decodes; returns null when header and data do not
 * match. `carry`: a format-2 record is not checked but carries its checksum
 * (its header is the one `encodeRecord` writes, so the checksum holds there).
 */
export function decodeRecord(
  headerBytes: Buffer,
  header: RecordHeader,
  data: Buffer,
  checksums: ChecksumMode = 'verify',
): JournalRecord | null {
  const carry = checksums === 'carry' && header.format === 2;
  if (!carry && crc32(data, crc32(headerBytes.subarray(0, 44))) !== header.crc) return null;
  const record: JournalRecord = {
    seq: header.seq,
    timeMs: header.timeMs,
    kind: header.kind,
    offset: header.offset,
    length: header.length,
  };
  if (carry) record.crc = header.crc;
  if (header.kind === 'write') record.data = data;
  if (header.kind === 'marker') {
    try {
      record.marker = decodeMarker(data, header.format);
    } catch {
      return null;
    }
  }
  return record;
}
