export {
  type BlockHashes,
  blockCountOf,
  blockDigest,
  checkBlockHashes,
  DIGEST_BYTES,
  digestAt,
} from './block-hashes.ts';
export type { Region } from './dirty-bitmap.ts';
export {
  type AttachOptions,
  DEFAULT_JOURNAL_CAPACITY,
  type DiskExportInfo,
  type DiskMarker,
  type DiskMarkerType,
  DiskService,
  type DiskServiceOptions,
  type ExportJournalStatus,
} from './disk-service.ts';
export { listJournalRecords } from './journal-reader.ts';
export type { ChecksumMode, JournalRecord, Marker, MarkerType, RecordKind } from './journal-record.ts';
export { JournaledBackend, type JournaledBackendOptions } from './journaled-backend.ts';
export { QuiescingBackend } from './quiescing-backend.ts';
export {
  DEFAULT_SINK_SYNC_MS,
  SinkBackend,
  type SinkBackendOptions,
  type SinkCompareStats,
} from './sink-backend.ts';
export {
  type JournalStatus,
  type ResyncPlan,
  WriteJournal,
  type WriteJournalOptions,
} from './write-journal.ts';
