import { type FileHandle, open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { HavenError } from '../errors/index.ts';
import {
  type ChecksumMode,
  decodeRecord,
  HEADER_SIZE,
  type JournalRecord,
  parseHeader,
} from './journal-record.ts';

/** Size of the sequential reads of a segment. */
const READ_CHUNK_BYTES = 1 << 20;

export const SEGMENT_NAME = /^journal-(\d{16})\.seg$/;

export function segmentName(firstSeq: number): string {
  return `journal-${String(firstSeq).padStart(16, '0')}.seg`;
}

/**
 * Lists a journal's records without opening it for writing: safe while the
 * disk service runs (for `haven disk journal`). A record still being appended
 * at the end is not listed; damage elsewhere is reported.
 */
export async function* listJournalRecords(dir: string, fromSeq = 0): AsyncGenerator<JournalRecord> {
  const segments = (await readdir(dir))
    .map((name) => SEGMENT_NAME.exec(name))
    .filter((m) => m !== null)
    .map((m) => ({ name: m[0], firstSeq: Number(m[1]) }))
    .sort((a, b) => a.firstSeq - b.firstSeq);
  for (const [i, segment] of segments.entries()) {
    const next = segments[i + 1];
    if (next !== undefined && next.firstSeq <= fromSeq) continue;
    const isLast = i === segments.length - 1;
    try {
      for await (const record of readSegment(
        join(dir, segment.name),
        segment.firstSeq,
        Number.MAX_SAFE_INTEGER,
        isLast,
      )) {
        if (record.seq >= fromSeq) yield record;
      }
    } catch (e) {
      // The service may have trimmed the segment meanwhile.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}

/** Where a reader stopped in a segment: the next record's sequence and file position. */
export interface SegmentPosition {
  seq: number;
  position: number;
}

/**
 * Reads a segment's records in order with large sequential reads, checking
 * each checksum. `start` resumes where an earlier read stopped (the record
 * there must be `start.seq`) instead of reading the segment from its start;
 * `onEnd` learns where this read stopped. `segment` is the file's path, or
 * the path and a handle open for reading that stays open (a reader that
 * comes back to the same segment opens it once), with the bytes the file
 * holds at most (a reader that comes back for one new record reads that, not
 * a whole chunk). `checksums: 'carry'` leaves
 * the check of records' data to whoever stores them again (the header is
 * still checked for sense and sequence).
 */
export async function* readSegment(
  segment: string | { path: string; fh: FileHandle; size: () => number },
  firstSeq: number,
  until: number,
  tolerateTornTail = false,
  start: SegmentPosition = { seq: firstSeq, position: 0 },
  onEnd?: (end: SegmentPosition) => void,
  checksums: ChecksumMode = 'verify',
): AsyncGenerator<JournalRecord> {
  const path = typeof segment === 'string' ? segment : segment.path;
  const fh = typeof segment === 'string' ? await open(path, 'r') : segment.fh;
  const fileSize = typeof segment === 'string' ? () => Number.POSITIVE_INFINITY : segment.size;
  let expected = start.seq;
  let recordPos = start.position;
  try {
    let buf = Buffer.alloc(0);
    let filePos = start.position;
    let eof = false;
    const fill = async (need: number): Promise<boolean> => {
      while (buf.length < need && !eof) {
        // Only the unread rest (part of one record) is copied into the next chunk, not the chunk read.
        const rest = buf.length + fileSize() - filePos;
        const chunk = Buffer.allocUnsafe(Math.max(need, Math.min(READ_CHUNK_BYTES, rest)));
        const kept = buf.copy(chunk, 0);
        const { bytesRead } = await fh.read(chunk, kept, chunk.length - kept, filePos);
        if (bytesRead === 0) eof = true;
        filePos += bytesRead;
        buf = chunk.subarray(0, kept + bytesRead);
      }
      return buf.length >= need;
    };
    while (await fill(HEADER_SIZE)) {
      const headerBytes = buf.subarray(0, HEADER_SIZE);
      const header = parseHeader(headerBytes);
      // Records past `until` may still be being appended.
      if (header !== null && header.seq > until) return;
      const complete = header !== null && (await fill(HEADER_SIZE + header.dataLength));
      if (!complete && tolerateTornTail) return;
      if (header === null || !complete) {
        throw new HavenError('internal', `write journal segment '${path}' is corrupt at byte ${recordPos}`, {
          kind: 'journal_corrupt',
          segment: path,
          position: recordPos,
        });
      }
      const record = decodeRecord(
        headerBytes,
        header,
        buf.subarray(HEADER_SIZE, HEADER_SIZE + header.dataLength),
        checksums,
      );
      if (record === null && tolerateTornTail) return;
      if (record === null || record.seq !== expected) {
        throw new HavenError('internal', `write journal segment '${path}' is corrupt at byte ${recordPos}`, {
          kind: 'journal_corrupt',
          segment: path,
          position: recordPos,
        });
      }
      const size = HEADER_SIZE + header.dataLength;
      // Before the yield: a consumer that stops after this record resumes after it.
      onEnd?.({ seq: expected + 1, position: recordPos + size });
      yield record;
      expected++;
      recordPos += size;
      buf = buf.subarray(size);
    }
  } finally {
    if (typeof segment === 'string') await fh.close();
  }
}
