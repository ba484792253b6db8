import { type FileHandle, open, readdir, readFile, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { JournalRecord, Marker, RecordKind } from '../disk/index.ts';
import { encodeRecord, HEADER_SIZE } from '../disk/journal-record.ts';
import { scanSegment } from '../disk/segment-scan.ts';
import { HavenError } from '../errors/index.ts';
// The journal's own record format and scanner: replica segments hold the records exactly as shipped.
import { syncDirectory } from '../storage/atomic-file.ts';
import { writevFully as writevAll } from '../storage/file-io.ts';
import { PRIVATE_FILE_MODE } from '../storage/private-files.ts';

const SEGMENT_NAME = /^seg-(\d{16})\.log$/;

function segmentName(firstSeq: number): string {
  return `seg-${String(firstSeq).padStart(16, '0')}.log`;
}

/** One file of retained records. Open views keep a reference so a merged segment stays readable. */
export class Segment {
  readonly firstSeq: number;
  readonly path: string;
  lastSeq: number;
  size: number;
  readonly fh: FileHandle;
  refs = 0;
  deleted = false;

  constructor(path: string, firstSeq: number, lastSeq: number, size: number, fh: FileHandle) {
    this.path = path;
    this.firstSeq = firstSeq;
    this.lastSeq = lastSeq;
    this.size = size;
    this.fh = fh;
  }

  retain(): void {
    this.refs++;
  }

  async release(): Promise<void> {
    this.refs--;
    if (this.refs === 0 && this.deleted) await this.fh.close();
  }
}

/** What the in-memory index knows of a stored record (its data stays in the segment file). */
export interface IndexedRecord {
  seq: number;
  timeMs: number;
  kind: RecordKind;
  offset: number;
  length: number;
  marker: Marker | null;
  segment: Segment;
  /** File position of the record's data (write records). */
  dataPos: number;
  /** File position just past the record. */
  endPos: number;
  /** Record bytes stored from the first record indexed since opening through this one. */
  cumBytes: number;
}

/** The index entry of `record`, stored as `bytes` bytes from file position `pos` of its segment. */
function indexed(
  record: JournalRecord,
  pos: number,
  bytes: number,
  cumBytes: number,
): Omit<IndexedRecord, 'segment'> {
  return {
    seq: record.seq,
    timeMs: record.timeMs,
    kind: record.kind,
    offset: record.offset,
    length: record.length,
    marker: record.marker ?? null,
    dataPos: pos + HEADER_SIZE,
    endPos: pos + bytes,
    cumBytes,
  };
}

function writevFully(fh: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  return writevAll(async (chunk, at) => (await fh.writev([...chunk], at)).bytesWritten, buffers, position);
}

/**
 * A replica's segment log: the retained records after the base, in sequence order,
 * in segment files of about `segmentBytes`. Records are durable (fdatasync)
 * once `append`, or `write` and then `sync`, resolve; a segment is synced
 * before the next one is started, so only the last segment can have a torn
 * tail after a crash.
 */
export class SegmentLog {
  readonly dir: string;
  readonly segmentBytes: number;
  #segments: Segment[];
  #cumBytes: number;
  /** Segments written since the last sync, and whether a segment file was created meanwhile. */
  readonly #unsynced = new Set<Segment>();
  #dirDirty = false;

  private constructor(dir: string, segmentBytes: number, segments: Segment[], cumBytes: number) {
    this.dir = dir;
    this.segmentBytes = segmentBytes;
    this.#segments = segments;
    this.#cumBytes = cumBytes;
  }

  /**
   * Opens the segments, cutting a torn tail off the last one and deleting those
   * wholly at or before `baseSeq` (a crash after a merge). Returns the records after `baseSeq`.
   */
  static async open(
    dir: string,
    baseSeq: number,
    segmentBytes: number,
  ): Promise<{ log: SegmentLog; records: IndexedRecord[]; cumAtBase: number }> {
    const found = (await readdir(dir))
      .map((name) => SEGMENT_NAME.exec(name))
      .filter((m) => m !== null)
      .map((m) => ({ name: m[0], firstSeq: Number(m[1]) }))
      .sort((a, b) => a.firstSeq - b.firstSeq);
    const segments: Segment[] = [];
    const records: IndexedRecord[] = [];
    let cumBytes = 0;
    let cumAtBase = 0;
    let expected: number | null = null;
    try {
      for (const [i, f] of found.entries()) {
        const path = join(dir, f.name);
        const isLast = i === found.length - 1;
        if (expected !== null && f.firstSeq !== expected) {
          throw new HavenError(
            'internal',
            `replica segment '${path}' starts at sequence ${f.firstSeq} but ${expected} was expected: a segment is missing`,
            { kind: 'replica_corrupt', segment: path, expected },
          );
        }
        const buf = await readFile(path);
        const pending: Omit<IndexedRecord, 'segment'>[] = [];
        const scan = scanSegment(path, buf, f.firstSeq, isLast, (record, pos) => {
          const dataLength = buf.readUInt32LE(pos + 40);
          cumBytes += HEADER_SIZE + dataLength;
          if (record.seq <= baseSeq) {
            cumAtBase = cumBytes;
            return;
          }
          pending.push(indexed(record, pos, HEADER_SIZE + dataLength, cumBytes));
        });
        if (scan.torn) await truncate(path, scan.validBytes);
        if (scan.records === 0 || scan.lastSeq <= baseSeq) {
          await unlink(path);
          if (scan.records > 0) expected = scan.lastSeq + 1;
          continue;
        }
        if (expected === null && f.firstSeq > baseSeq + 1) {
          throw new HavenError(
            'internal',
            `replica segment log '${dir}' is missing records ${baseSeq + 1} to ${f.firstSeq - 1} after the base`,
            { kind: 'replica_corrupt', dir, baseSeq, firstSeq: f.firstSeq },
          );
        }
        expected = scan.lastSeq + 1;
        const fh = await open(path, 'r+');
        // Bytes recovered from a crashed process may be only in the page cache.
        if (isLast) await fh.datasync();
        const segment = new Segment(path, f.firstSeq, scan.lastSeq, scan.validBytes, fh);
        segments.push(segment);
        for (const r of pending) records.push({ ...r, segment });
      }
    } catch (e) {
      for (const s of segments) await s.fh.close();
      throw e;
    }
    return { log: new SegmentLog(dir, segmentBytes, segments, cumBytes), records, cumAtBase };
  }

  get segments(): readonly Segment[] {
    return this.#segments;
  }

  /** Bytes of segment files on disk. */
  get storedBytes(): number {
    return this.#segments.reduce((n, s) => n + s.size, 0);
  }

  /** Writes records (already validated, consecutive) durably and returns their index entries. */
  async append(records: readonly JournalRecord[]): Promise<IndexedRecord[]> {
    const out = await this.write(records);
    await this.sync();
    return out;
  }

  /**
   * Writes records (already validated, consecutive) into the page cache and
   * returns their index entries; `sync` makes them durable. A filled segment
   * is synced here, before the next one is started.
   */
  async write(records: readonly JournalRecord[]): Promise<IndexedRecord[]> {
    const out: IndexedRecord[] = [];
    let segment = this.#segments.at(-1);
    let buffers: Buffer[] = [];
    let startPos = 0;
    const writeOut = async () => {
      if (segment !== undefined && buffers.length > 0) await writevFully(segment.fh, buffers, startPos);
      buffers = [];
    };
    // All encoded first: a record damaged since it was journaled throws before anything is written.
    const encodings = records.map(encodeRecord);
    for (const [i, record] of records.entries()) {
      const encoded = encodings[i] as Buffer[];
      const bytes = encoded.reduce((n, b) => n + b.length, 0);
      if (segment === undefined || (segment.size > 0 && segment.size + bytes > this.segmentBytes)) {
        if (segment !== undefined) {
          await writeOut();
          // Synced before the next segment exists: only the last segment can be torn.
          await segment.fh.datasync();
          this.#unsynced.delete(segment);
        }
        const path = join(this.dir, segmentName(record.seq));
        segment = new Segment(path, record.seq, record.seq - 1, 0, await open(path, 'w+', PRIVATE_FILE_MODE));
        this.#segments.push(segment);
        this.#dirDirty = true;
      }
      if (buffers.length === 0) startPos = segment.size;
      buffers.push(...encoded);
      this.#unsynced.add(segment);
      this.#cumBytes += bytes;
      out.push({ ...indexed(record, segment.size, bytes, this.#cumBytes), segment });
      segment.size += bytes;
      segment.lastSeq = record.seq;
    }
    await writeOut();
    return out;
  }

  /** Makes every record written before this call durable. */
  async sync(): Promise<void> {
    const segments = [...this.#unsynced];
    const dirDirty = this.#dirDirty;
    this.#unsynced.clear();
    this.#dirDirty = false;
    // A deleted segment's records were merged or dropped: they need no sync.
    for (const s of segments) if (!s.deleted) await s.fh.datasync();
    if (dirDirty) await syncDirectory(this.dir);
  }

  /** Deletes the segments holding only records at or before `seq` (merged into the base). */
  async deleteThrough(seq: number): Promise<void> {
    const keep: Segment[] = [];
    for (const s of this.#segments) {
      if (s.lastSeq > seq || s === this.#segments.at(-1)) keep.push(s);
      else await this.#delete(s);
    }
    this.#segments = keep;
  }

  /** Drops every record after `seq` (whose record ends at `endPos` in its segment, if stored). */
  async truncateAfter(seq: number, last: IndexedRecord | null): Promise<void> {
    const keep: Segment[] = [];
    for (const s of this.#segments) {
      if (last !== null && s === last.segment) {
        await s.fh.truncate(last.endPos);
        await s.fh.datasync();
        s.size = last.endPos;
        s.lastSeq = seq;
        keep.push(s);
      } else if (s.firstSeq > seq || last === null) {
        await this.#delete(s);
      } else keep.push(s);
    }
    this.#segments = keep;
    await syncDirectory(this.dir);
  }

  async #delete(s: Segment): Promise<void> {
    s.deleted = true;
    await unlink(s.path).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
    // An open view may still read it through its handle.
    if (s.refs === 0) await s.fh.close();
  }

  async close(): Promise<void> {
    for (const s of this.#segments) if (s.refs === 0) await s.fh.close();
  }
}
