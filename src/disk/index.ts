export { AllocationMap, allocationMapPath } from './allocation-map.ts';
export type { Region } from './dirty-bitmap.ts';
export { type FileSync, realFileSync } from './file-sync.ts';
export { listJournalRecords } from './journal-reader.ts';
export type { JournalRecord, Marker, MarkerType, RecordKind } from './journal-record.ts';
export { JournaledBackend, type JournaledBackendOptions } from './journaled-backend.ts';
export { createSparseImage, parseSize } from './sparse-image.ts';
export {
  type JournalStatus,
  type ResyncPlan,
  WriteJournal,
  type WriteJournalOptions,
} from './write-journal.ts';
