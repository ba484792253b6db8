import type {
  DataSync,
  LifecycleOperation,
  RecoveryPointRequest,
  TransitionOptions,
} from '../../domain/index.ts';

/** The operator's choice of recovery point. */
export type RecoveryPointChoice = { option: RecoveryPointRequest['option']; pointId?: string };

type NoOptions = Record<never, never>;

/** Each lifecycle operation's options, as the API and recovery plans request it (src/api/schemas.ts parses them). */
export type OperationOptions = {
  'enable-replication': {
    recoveryHostId: string;
    policyId: string;
    /**
     * Set by the vault, never by a caller: the machine is an imported domain,
     * protected live through QEMU's active mirror (its job arms the mirror).
     */
    liveMirror?: boolean;
    /**
     * Set by the vault, never by a caller: the machine is a physical server,
     * whose initial replication is its md arrays' own resync onto the NBD legs.
     */
    serverLegs?: boolean;
  };
  'disable-replication': NoOptions;
  'test-failover': { recoveryPoint: RecoveryPointChoice; network?: string };
  'cleanup-test-failover': { notes: string };
  failover: { recoveryPoint: RecoveryPointChoice; shutdownSource: boolean };
  /** Power the source off when it has not shut down this many seconds after the ACPI request (a guest that ignores ACPI). */
  'planned-failover': { forceOffAfterSeconds?: number };
  failback: {
    dataSync: DataSync;
    alternateHostId?: string;
    /** Set by the vault, never by a caller: back onto a physical server itself (through its recovery environment). */
    ontoServer?: boolean;
  };
  /** `ontoServer`: as for failback. */
  'complete-failover': { ontoServer?: boolean };
  'change-recovery-point': { recoveryPoint: RecoveryPointChoice };
  commit: NoOptions;
  reprotect: { alternateHostId?: string; fullResync: boolean };
  resync: { full: boolean };
};

/** An operation with its options: a union on `operation`, so checking the operation narrows the options. */
export type OperationWithOptions<O extends LifecycleOperation = LifecycleOperation> = {
  [P in O]: { operation: P; options: OperationOptions[P] };
}[O];

/** Pairs an operation with its options, as a member of the union `U` of operations (default: any). */
export function withOptions<U extends LifecycleOperation, O extends U>(
  operation: O,
  options: OperationOptions[O],
): OperationWithOptions<U> {
  // The signature pairs the operation with its own options; TypeScript cannot follow a generic operation into the union.
  return { operation, options } as OperationWithOptions<O> as OperationWithOptions<U>;
}

/** The options that choose between an operation's transitions (failback's variants). */
export function transitionOptions(request: OperationWithOptions): TransitionOptions {
  return request.operation === 'failback' ? { dataSync: request.options.dataSync } : {};
}
