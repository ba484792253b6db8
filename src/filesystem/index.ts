export {
  checkDiskFilesystems,
  type DiskToCheck,
  type FilesystemCheck,
  type FilesystemCheckResult,
  type FilesystemLocation,
} from './check-disk-filesystems.ts';
export {
  checkExtFilesystem,
  type ExtFilesystemCheck,
  extJournalNeedsRecovery,
} from './ext-filesystem-check.ts';
export { type FilesystemSignature, type FilesystemType, identifyFilesystem } from './filesystem-signature.ts';
export { initramfsModules, initramfsPaths } from './initramfs-archive.ts';
export { type Partition, type PartitionTableType, readPartitionTable } from './partition-table.ts';
export {
  checkVmBoot,
  VM_BOOT_MODULES,
  type VmBootCheck,
  type VmBootCheckItem,
  type VmBootCheckResult,
} from './vm-boot-check.ts';
