export {
  QmpClient,
  type QmpConnectOptions,
  type QmpEvent,
  type QmpGreeting,
} from '../hypervisor/qmp-client.ts';
export {
  type BootGuestOptions,
  bootGuest,
  type GuestDisk,
  type GuestExit,
  type GuestHandle,
  qemuArguments,
} from './boot-guest.ts';
export {
  type BuildGuestImageOptions,
  buildGuestImage,
  defaultGuestCacheDir,
  type GuestImage,
  type GuestVariant,
  initramfsWithFiles,
} from './build-guest-image.ts';
export { checkDataDisk, type DataDiskCheck, formatDataDisk } from './data-disk.ts';
export { type GuestSettings, guestCommandLine } from './guest-command-line.ts';
