export { ExtentMap } from './extent-map.ts';
export { machinePoints, type PointLister, seqOfPoint } from './machine-points.ts';
export { type OverlayOptions, OverlayView } from './overlay-view.ts';
export { PointView } from './point-view.ts';
export {
  type DiskPointRef,
  formatRecoveryPointRef,
  type MarkerPointRef,
  parseRecoveryPointRef,
  type RecoveryPointRef,
} from './recovery-point-ref.ts';
export { mergeRegions, regionBytes } from './regions.ts';
export type { KeptView, ReplicaDiskStatus } from './replica-disk.ts';
export {
  type OpenViewOptions,
  type PointRef,
  ReplicaStore,
  type ReplicaStoreOptions,
} from './replica-store.ts';
export {
  DEFAULT_RETENTION,
  type RecoveryPointInfo,
  type RecoveryPointKind,
  type RetentionPolicy,
  retainedPoints,
} from './retention.ts';
