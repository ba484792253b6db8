export {
  QmpClient,
  type QmpConnectOptions,
  type QmpEvent,
  type QmpGreeting,
} from '../hypervisor/qmp-client.ts';
export {
  type BootGuestOptions,
  bootGuest,
  type DirectKernelBoot,
  type DiskBoot,
  type GuestDisk,
  type GuestExit,
  type GuestHandle,
  qemuArguments,
} from './boot-guest.ts';
export {
  type BuildGuestImageOptions,
  buildGuestImage,
  defaultGuestCacheDir,
  filesArchive,
  type GuestImage,
  type GuestVariant,
  initramfsWithFiles,
} from './build-guest-image.ts';
export { checkDataDisk, type DataDiskCheck, formatDataDisk } from './data-disk.ts';
export { type GuestSettings, guestCommandLine } from './guest-command-line.ts';
export {
  buildServerBootDisk,
  copyServerBootDisk,
  SERVER_BOOT_DISK,
  type ServerBootDisk,
} from './server-boot-disk.ts';
