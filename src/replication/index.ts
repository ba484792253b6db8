export { Receiver, type ReceiverOptions, type ReceiverStats } from './receiver.ts';
export type { ReplicaSink } from './replica-sink.ts';
export { generateHostIdentity, type HostIdentity } from './replication-tls.ts';
export {
  type DiskReplicationStatus,
  type ReceiverAddress,
  type ReplicatedDisk,
  type ReplicationSource,
  type ReplicationState,
  Sender,
  type SenderOptions,
  type SyncReport,
} from './sender.ts';
export type { SyncKind } from './sender-state.ts';
export { TokenBucket } from './token-bucket.ts';
export { DEFAULT_REPLICATION_PORT, PROTOCOL_VERSION } from './wire-protocol.ts';
