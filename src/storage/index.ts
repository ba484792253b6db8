export { AllocationMap, allocationMapPath } from './allocation-map.ts';
export { syncDirectory, writeFileAtomic } from './atomic-file.ts';
export { Bitset } from './bitset.ts';
export type { BlockExtent } from './block-extent.ts';
export { FileIo, type FileIoPolicy, SyncBudget, writevFully } from './file-io.ts';
export { type FileSync, realFileSync } from './file-sync.ts';
export { GroupCommit } from './group-commit.ts';
export { isNoSpace, SpaceReserve } from './space-reserve.ts';
export { createSparseImage } from './sparse-image.ts';
