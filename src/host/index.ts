export { type DataPath, type DataPathOptions, startDataPath } from './data-path.ts';
export { diskKeyOf } from './disk-key.ts';
export { type EnrolOptions, enrol } from './enrol.ts';
export {
  agentVersion,
  type HostAgent,
  type HostAgentOptions,
  type HostInventory,
  hostInfoService,
  startHostAgent,
} from './host-agent.ts';
export { createHostDispatcher, type HostCall, remoteHostServices } from './host-dispatcher.ts';
export {
  HOST_IDENTITY_FILE,
  type HostIdentity,
  hostIdentityPath,
  loadHostIdentity,
  saveHostIdentity,
} from './host-identity.ts';
export type * from './host-services.ts';
export { HOST_OPERATIONS, hostMethods, MAX_WRITE_HOLD_MS } from './host-services.ts';
export { notAvailableServices } from './not-available-services.ts';
export { type HostOptions, type RunningHost, startHost } from './start-host.ts';
