import { HavenError } from '../errors/index.ts';
import {
  decodeRecord,
  HEADER_SIZE,
  type JournalRecord,
  MAGIC_PREFIX,
  parseHeader,
} from './journal-record.ts';

export interface SegmentScan {
  records: number;
  /** Sequence of the last complete record, or firstSeq - 1 when there is none. */
  lastSeq: number;
  /** Bytes holding complete records; a torn tail starts here. */
  validBytes: number;
  /** Whether bytes after `validBytes` must be cut off (a torn tail). */
  torn: boolean;
}

function corrupt(segment: string, position: number, reason: string): HavenError {
  return new HavenError(
    'internal',
    `write journal segment '${segment}' is corrupt at byte ${position}: ${reason}; ` +
      'records after this point cannot be trusted and were not skipped',
    { kind: 'journal_corrupt', segment, position, reason },
  );
}

function recordAt(buf: Buffer, pos: number): JournalRecord | null {
  if (buf.length - pos < HEADER_SIZE) return null;
  const headerBytes = buf.subarray(pos, pos + HEADER_SIZE);
  const header = parseHeader(headerBytes);
  if (header === null) return null;
  const end = pos + HEADER_SIZE + header.dataLength;
  if (end > buf.length) return null;
  return decodeRecord(headerBytes, header, buf.subarray(pos + HEADER_SIZE, end));
}

/** Whether any complete, valid record starts after `pos`: if so, damage at `pos` is not a torn tail. */
function validRecordAfter(buf: Buffer, pos: number): boolean {
  for (let at = buf.indexOf(MAGIC_PREFIX, pos + 1); at !== -1; at = buf.indexOf(MAGIC_PREFIX, at + 1)) {
    if (recordAt(buf, at) !== null) return true;
  }
  return false;
}

/**
 * Checks a segment's records in order. In the last segment, damage with no
 * valid record after it is a torn tail (a crash mid-append) and is reported for
 * truncation; any other damage, or a gap in the sequence, is corruption.
 * `onRecord` sees every complete record.
 */
export function scanSegment(
  name: string,
  buf: Buffer,
  firstSeq: number,
  isLast: boolean,
  onRecord?: (record: JournalRecord, position: number) => void,
): SegmentScan {
  let pos = 0;
  let expected = firstSeq;
  let records = 0;
  while (pos < buf.length) {
    const record = recordAt(buf, pos);
    if (record === null) {
      if (isLast && !validRecordAfter(buf, pos)) {
        return { records, lastSeq: expected - 1, validBytes: pos, torn: true };
      }
      const why =
        buf.length - pos < HEADER_SIZE ? 'truncated record header' : 'bad record header or checksum';
      throw corrupt(name, pos, why);
    }
    if (record.seq !== expected) {
      throw corrupt(name, pos, `expected sequence ${expected}, found ${record.seq}`);
    }
    onRecord?.(record, pos);
    pos += HEADER_SIZE + buf.readUInt32LE(pos + 40);
    expected++;
    records++;
  }
  return { records, lastSeq: expected - 1, validBytes: pos, torn: false };
}
