export {
  type ActiveMirrorDriver,
  type ArmMirrorParams,
  type MirrorJobState,
  type MirrorSink,
  mirrorNodeNames,
} from './active-mirror.ts';
export {
  BridgeNetworks,
  isolatedBridge,
  isolatedNamespace,
  type NetworkPlacement,
  networkPlacement,
  runIp,
} from './bridge-networks.ts';
export type * from './hypervisor.ts';
export {
  derivedMac,
  MAX_CPUS,
  MAX_NICS,
  MIN_MEMORY_MIB,
  type StoredDefinition,
  type StoredNic,
  staticIpWords,
  validateMachineDefinition,
} from './machine-definition.ts';
export { type NbdServer, type NbdTarget, parseNbdUri } from './nbd-uri.ts';
export {
  type QemuCommandLineOptions,
  type QemuRunFiles,
  qemuCommandLine,
  qemuOptionValue,
} from './qemu-command-line.ts';
export { createQemuDriver, QemuDriver, type QemuDriverOptions } from './qemu-driver.ts';
export { QmpClient, type QmpConnectOptions, type QmpEvent, type QmpGreeting } from './qmp-client.ts';
