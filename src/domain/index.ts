export { bmcUrlOf, IPMI_PORT, parseBmcUrl } from './bmc-url.ts';
export { type GroupMember, MAX_GROUP_MEMBERS, validateConsistencyGroup } from './consistency-group.ts';
export {
  isTerminalJobState,
  JOB_STATES,
  TERMINAL_JOB_STATES,
  type TerminalJobState,
} from './job-states.ts';
export {
  ALL_OPERATIONS,
  allowedOperations,
  type DataSync,
  failureState,
  IN_PROGRESS_STATES,
  type InProgressState,
  isInProgress,
  isReplicating,
  LIFECYCLE,
  type LifecycleOperation,
  type MachineRef,
  planTransition,
  type RunningSite,
  STABLE_STATES,
  type StableState,
  type Transition,
  type TransitionOptions,
  where,
} from './lifecycle.ts';
export type * from './model.ts';
export {
  DISK_ID_PATTERN,
  isServerDevicePath,
  machineKindOf,
  SERVER_DEVICE_PATTERN,
  serverAtPrimary,
  vmNameOf,
} from './model.ts';
export {
  AUTOMATIC_FAILBACK_POLICY,
  assertEditable,
  assertValidPolicy,
  DEFAULT_POLICY,
  MAX_POLICY_NAME_LENGTH,
  MAX_RETENTION_SECONDS,
  MIN_APP_CONSISTENT_FREQUENCY_SECONDS,
  type PolicyInput,
  validatePolicy,
} from './policy-rules.ts';
export type { Problem, ProblemCode } from './problem.ts';
export {
  type GroupRecoveryPointSelection,
  type MachineName,
  type MultiMachineOption,
  pointsToDeleteOnCommit,
  pointsWithinRetention,
  RECOVERY_POINT_OPTIONS,
  type RecoveryPointOption,
  type RecoveryPointRequest,
  type RecoveryPointSelection,
  selectGroupRecoveryPoint,
  selectRecoveryPoint,
} from './recovery-point-selection.ts';
export {
  assertValid,
  checkDiskLimit,
  DEFAULT_MAX_PROTECTED_DISKS,
  MAX_CPUS,
  MAX_MEMORY_MIB,
  type MachineToValidate,
  MIN_CPUS,
  MIN_MEMORY_MIB,
  parseIp,
  type RecoveryValidationContext,
  SECTOR_BYTES,
  type UsedAddress,
  validateFailbackTarget,
  validateForReprotect,
  validateRecoverySettings,
} from './recovery-settings-validation.ts';
export { agentReporting, serverLinkWords, serverSyncPercent } from './server-link-words.ts';
