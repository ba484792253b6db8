export {
  ControlClient,
  type ControlClientOptions,
  parseControlAddress,
} from './control-client.ts';
export {
  CONTROL_PROTOCOL_VERSION,
  HOST_NOTIFICATIONS,
  type HostNotification,
} from './control-protocol.ts';
export {
  ControlServer,
  type ControlServerEvents,
  type ControlServerOptions,
  type HostConnectionInfo,
} from './control-server.ts';
export { encodeFrame, FrameDecoder, MAX_FRAME_BYTES } from './frame-codec.ts';
export {
  createHostCredential,
  createNonce,
  credentialHashOf,
  type HostCredential,
  proveHost,
  verifyHostProof,
} from './host-proof.ts';
export { type PinnedFetch, type PinnedRequest, pinnedFetch } from './pinned-fetch.ts';
export { type CallOptions, errorBody, havenErrorFromBody, RpcPeer } from './rpc-peer.ts';
export {
  certificateFingerprint,
  type GenerateVaultIdentityOptions,
  generateVaultIdentity,
  sameFingerprint,
  type VaultIdentity,
} from './vault-identity.ts';
