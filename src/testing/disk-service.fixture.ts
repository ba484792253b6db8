/**
 * Test helpers for the disk service tests: read a journal and rebuild a disk
 * from it as a replica would. Not exported from index.ts.
 */
import { crc32 } from 'node:zlib';
import { listJournalRecords } from '../disk/journal-reader.ts';
import type { JournalRecord } from '../disk/journal-record.ts';

export async function readJournal(dir: string, fromSeq = 0): Promise<JournalRecord[]> {
  const out: JournalRecord[] = [];
  for await (const r of listJournalRecords(dir, fromSeq)) out.push(r);
  return out;
}

/** Applies the records to a copy of `base`. */
export function replay(base: Buffer, records: readonly JournalRecord[]): Buffer {
  const disk = Buffer.from(base);
  for (const r of records) {
    if (r.kind === 'write') r.data?.copy(disk, r.offset);
    else if (r.kind === 'trim' || r.kind === 'zero') disk.fill(0, r.offset, r.offset + r.length);
  }
  return disk;
}

/** A record as comparable text: kind, offset, length and the data's checksum. */
export function describeRecord(r: JournalRecord): string {
  if (r.kind === 'flush') return 'flush';
  if (r.kind === 'marker') return `marker ${r.marker?.type} ${r.marker?.id}`;
  return `${r.kind} ${r.offset} ${r.length}${r.data === undefined ? '' : ` crc=${crc32(r.data)}`}`;
}
