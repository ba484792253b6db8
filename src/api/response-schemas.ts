import { z } from 'zod';
import {
  DRILL_POINT_CHOICES,
  DRILL_STATES,
  type DrillCheck,
  type DrillMachineResult,
  type DrillProof,
  type DrillReport,
  type DrillRun,
  type DrillSchedule,
  type TargetProof,
} from '../domain/drill.ts';
import { ALL_OPERATIONS } from '../domain/index.ts';
import { JOB_STATES } from '../domain/job-states.ts';
import type {
  AccessView,
  AccessViewDisk,
  Alert,
  ApiToken,
  Disk,
  Host,
  Job,
  JobStep,
  Machine,
  MirroredDiskState,
  MirrorSnapshot,
  Policy,
  RecoveryPlan,
  RecoveryPlanAction,
  RecoveryPoint,
  RegisteredScript,
  ReplicationSnapshot,
  RunningCopy,
  ScriptRunRecord,
  ServerLinkSnapshot,
  Site,
  SourceFence,
  ViewClosedReason,
} from '../domain/model.ts';
import { IN_PROGRESS_STATES, STABLE_STATES } from '../domain/model.ts';
import type { Problem, ProblemCode } from '../domain/problem.ts';
import type { RtoEstimate } from '../domain/recovery-plan-rto.ts';
import type { PlanDocument } from '../domain/recovery-plan-validation.ts';
import {
  REPLICATION_RESOLUTIONS,
  type ReplicationHistory,
  type ReplicationSample,
} from '../domain/replication-history.ts';
import type {
  DomainDescription,
  HypervisorInventory,
  MachinePowerState,
  MachineStatus,
  ShutdownResult,
} from '../hypervisor/hypervisor.ts';
import type { ConsistencyGroup, GroupCut } from '../vault/groups/index.ts';
import type { HostCapacity } from '../vault/host-capacity.ts';
import type { HostDomains } from '../vault/import-domain.ts';
import { PLAN_OPERATIONS, type PlanOperationAvailability } from '../vault/plans/index.ts';
import type { OpenedAccessView } from '../vault/point-access.ts';
import type { ServerEnrolmentIssued } from '../vault/servers/index.ts';
import * as x from './response-examples.ts';
import { recoverySettings, withExample } from './schemas.ts';

/**
 * What the API answers, as schemas: each route declares its response with
 * these (routes/*), the OpenAPI document is generated from them, and the
 * compiler holds each to the domain type it describes (`describes`).
 */

type SameKeys<S, T> = [Exclude<keyof S, keyof T> | Exclude<keyof T, keyof S>] extends [never] ? true : false;

/**
 * The schema of T as JSON. The compiler refuses a schema whose output is not a
 * T, and one that leaves out a field of T or adds one T does not have.
 */
export function describes<T>() {
  return <S extends z.ZodType<T>>(
    schema: S &
      (SameKeys<z.output<S>, T> extends true
        ? unknown
        : { keysDiffer: Exclude<keyof z.output<S>, keyof T> | Exclude<keyof T, keyof z.output<S>> }),
  ): z.ZodType<T> => schema;
}

const time = z.iso.datetime({ offset: true });
const id = z.string();
const pointType = z.enum(['crash-consistent', 'app-consistent']);
export const role = z.enum(['admin', 'operator', 'viewer']);
const copyProgress = z.strictObject({ doneBytes: z.number(), totalBytes: z.number() });

export const site = describes<Site>()(
  z
    .strictObject({
      id,
      name: z.string(),
      role: z.enum(['primary', 'recovery']),
      networkMapping: z.record(z.string(), z.string()),
      testNetwork: z.string().nullable(),
      createdAt: time,
    })
    .meta({ id: 'Site', examples: [x.siteExample] }),
);

export const host = describes<Host>()(
  z
    .strictObject({
      id,
      name: z.string(),
      siteId: id,
      status: z.enum(['pending', 'connected', 'unreachable']),
      replicationAddress: z.string().nullable(),
      replicationFingerprint: z.string().nullable(),
      maxProtectedDisks: z.number(),
      capabilities: z.array(z.string()),
      storageFolders: z.array(z.string()),
      version: z.string().nullable(),
      lastHeartbeatAt: time.nullable(),
      enrolledAt: time,
    })
    .meta({ id: 'Host', examples: [x.hostExample] }),
);

export const policy = describes<Policy>()(
  z
    .strictObject({
      id,
      name: z.string(),
      rpoThresholdSeconds: z.number(),
      retentionSeconds: z.number(),
      appConsistentFrequencySeconds: z.number(),
      builtIn: z.boolean(),
      createdAt: time,
    })
    .meta({ id: 'Policy', examples: [x.policyExample] }),
);

const disk = describes<Disk>()(
  z.strictObject({
    id: z.string(),
    serverDevice: z.string().nullable().optional(),
    serverStagingImage: z.string().nullable().optional(),
    nbdUri: z.string().nullable().optional(),
    sizeBytes: z.number(),
    source: z.string(),
    hasSnapshots: z.boolean(),
    fromDomain: z
      .strictObject({ target: z.string(), bus: z.string(), format: z.string().nullable() })
      .nullable()
      .optional(),
  }),
);

const runningCopyFields = {
  hostId: id,
  viewId: id,
  vmName: z.string(),
  pointId: id,
  pointTime: time,
  disks: z.array(z.strictObject({ diskId: z.string(), nbdUri: z.string() })),
  startedAt: time,
  localImages: z
    .array(z.strictObject({ diskId: z.string(), image: z.string() }))
    .nullable()
    .optional(),
  viewClosed: z.boolean().optional(),
};
const runningCopy = describes<RunningCopy>()(z.strictObject(runningCopyFields));

const mirroredDisk = describes<MirroredDiskState>()(
  z.strictObject({
    diskId: z.string(),
    target: z.string(),
    state: z.enum(['armed', 'copying', 'domain-off', 'not-armed']),
    problem: z.string().nullable(),
    copy: copyProgress.nullable(),
    waitingForSender: z.boolean().optional(),
    armedAt: time.nullable(),
    arms: z.number(),
    lastRearm: z
      .strictObject({
        at: time,
        reason: z.string(),
        compared: z.boolean(),
        journaledBytes: z.number().nullable(),
        skippedBytes: z.number().nullable(),
      })
      .nullable(),
  }),
);

const mirrorFields = {
  domain: z.string(),
  state: z.enum(['armed', 'syncing', 'not-armed']),
  paused: z.boolean().optional(),
  disks: z.array(mirroredDisk),
  lastPointAt: time.nullable(),
  stoppedPointAt: time.nullable().optional(),
};
const mirrorSnapshot = describes<MirrorSnapshot>()(z.strictObject(mirrorFields));

/** A libvirt domain's live protection, as `pause-protection` and `resume-protection` answer it. */
export const mirrorStatus = z
  .strictObject({ machineId: id, ...mirrorFields })
  .meta({ id: 'MirrorStatus', examples: [x.mirrorStatusExample] });

const serverFailbackReport = z.strictObject({
  phase: z.enum(['copying', 'done', 'failed']),
  copiedBytes: z.number(),
  totalBytes: z.number(),
  elapsedMs: z.number(),
  problem: z.string().nullable(),
});

const serverLinkSnapshot = describes<ServerLinkSnapshot>()(
  z.strictObject({
    state: z.enum(['awaiting-enrolment', 'agent-silent', 'syncing', 'in-sync', 'degraded']),
    legs: z.array(
      z.strictObject({
        diskId: z.string(),
        sizeBytes: z.number(),
        connected: z.boolean(),
        md: z.enum(['in-sync', 'resyncing', 'recovering', 'unknown']),
        syncedBytes: z.number().nullable(),
        pointsAllowed: z.boolean(),
        lastWriteAt: time.nullable(),
      }),
    ),
    agent: z
      .strictObject({
        receivedAt: time,
        hostname: z.string(),
        agentVersion: z.string(),
        stopping: z.boolean(),
        disks: z.array(
          z.strictObject({
            diskId: z.string(),
            array: z.string(),
            legs: z.string(),
            action: z.enum(['idle', 'resync', 'recovery', 'degraded']),
            progressPercent: z.number().nullable(),
            bitmapDirtyChunks: z.number().nullable(),
            mdEvents: z.number().nullable().optional(),
          }),
        ),
        failback: serverFailbackReport.nullable().optional(),
      })
      .nullable(),
    problem: z.string().nullable(),
    failback: serverFailbackReport.nullable().optional(),
  }),
);

const replicationSnapshot = describes<ReplicationSnapshot>()(
  z.strictObject({
    state: z.enum(['initial-sync', 'resync', 'streaming', 'paused', 'stopped', 'error', 'unreachable']),
    progress: z.number(),
    copy: copyProgress.nullable().optional(),
    rpoSeconds: z.number().nullable(),
    pendingBytes: z.number(),
    sentBytes: z.number(),
    throughputBytesPerSec: z.number(),
    lastError: z.string().nullable(),
    updatedAt: time,
    mirror: mirrorSnapshot.nullable().optional(),
    server: serverLinkSnapshot.nullable().optional(),
  }),
);

const sourceFence = describes<SourceFence>()(
  z.discriminatedUnion('verified', [
    z.strictObject({
      verified: z.literal(false),
      hostId: id,
      vmName: z.string(),
      reason: z.string(),
      jobId: id,
      since: time,
      attempts: z.number(),
      lastAttemptAt: time.nullable(),
    }),
    z.strictObject({
      verified: z.literal(true),
      hostId: id,
      vmName: z.string(),
      state: z.enum(['shut-off', 'absent']),
      jobId: id,
      fencedAt: time,
      by: z.enum(['failover', 'host-returned']),
    }),
  ]),
);

const machineFields = {
  id,
  name: z.string(),
  primaryHostId: id,
  recoveryHostId: id.nullable(),
  activeHostId: id,
  policyId: id.nullable(),
  groupId: z.string().nullable(),
  osFamily: z.enum(['linux', 'windows', 'other']),
  state: z.enum([...STABLE_STATES, ...IN_PROGRESS_STATES]),
  health: z.enum(['healthy', 'warning', 'critical', 'unknown']),
  disks: z.array(disk),
  recoverySettings,
  currentJobId: id.nullable(),
  replication: replicationSnapshot.nullable(),
  runtime: z.strictObject({
    test: z.strictObject({ ...runningCopyFields, network: z.string() }).nullable(),
    failover: runningCopy.nullable(),
  }),
  originalExists: z.boolean(),
  importedFrom: z
    .strictObject({
      driver: z.literal('libvirt'),
      uri: z.string(),
      domain: z.string(),
      uuid: z.string().nullable(),
      importedAt: time,
    })
    .nullable()
    .optional(),
  sourceFence: sourceFence.nullable().optional(),
  server: z
    .strictObject({
      writeBehind: z.number().nullable(),
      nbdTimeoutSeconds: z.number(),
      enrolledAt: time.nullable(),
      /** Where its BMC is and as whom; its password is never shown. */
      bmc: z
        .strictObject({
          protocol: z.literal('ipmi'),
          address: z.string(),
          port: z.number(),
          user: z.string(),
          cipherSuite: z.number().nullable().optional(),
        })
        .nullable()
        .optional(),
    })
    .nullable()
    .optional(),
  createdAt: time,
  updatedAt: time,
};
describes<Machine>()(z.strictObject(machineFields));

/** A machine as the API shows it: the stored record and the operations its state allows now. */
export const machine = z
  .strictObject({
    ...machineFields,
    allowedOperations: z.array(z.enum(ALL_OPERATIONS)),
  })
  .meta({ id: 'Machine', examples: [x.machineExample] });

const serverEnrolmentFields = {
  /** Shown once: the vault keeps only its hash. */
  token: z.string(),
  expiresAt: time,
  /** The lines to run as root on the server, the host's server CA written by a heredoc. */
  commands: z.array(z.string()),
  writeOrdering: z.string(),
};

export const serverEnrolment = describes<ServerEnrolmentIssued>()(
  z.strictObject(serverEnrolmentFields).meta({ id: 'ServerEnrolment', examples: [x.serverEnrolmentExample] }),
);

export const addedServer = z
  .strictObject({ machine, ...serverEnrolmentFields })
  .meta({ examples: [{ machine: x.serverMachineExample, ...x.serverEnrolmentExample }] });

export const recoveryPoint = describes<RecoveryPoint>()(
  z
    .strictObject({
      id,
      machineId: id,
      time,
      sequence: z.number(),
      type: pointType,
      groupPointId: id.nullable(),
      processed: z.boolean(),
      sizeBytes: z.number(),
    })
    .meta({ id: 'RecoveryPoint', examples: [x.recoveryPointExample] }),
);

const problemCode = z.string() as unknown as z.ZodType<ProblemCode>;
export const problem = withExample(
  describes<Problem>()(z.strictObject({ field: z.string(), code: problemCode, message: z.string() })),
  {
    field: 'nics.0.recoveryNetwork',
    code: 'unknown_network',
    message: "network 'lan-dr' does not exist on host 'kvm-b'",
  },
);

const jobError = z.strictObject({ code: z.string(), message: z.string() });
const jobStep = describes<JobStep>()(
  z.strictObject({
    index: z.number(),
    name: z.string(),
    title: z.string(),
    state: z.enum(['pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled']),
    progress: z.number(),
    message: z.string().nullable(),
    startedAt: time.nullable(),
    finishedAt: time.nullable(),
    error: jobError.nullable(),
    output: z
      .record(z.string(), z.unknown())
      .nullable()
      .describe(
        "What the step recorded; null for jobs from before steps kept their own (the job's output has it all)",
      ),
  }),
);
const jobFields = {
  id,
  kind: z.string(),
  targetType: z.enum(['machine', 'plan', 'host', 'vault']),
  targetId: id.nullable(),
  state: z.enum(JOB_STATES),
  progress: z.number(),
  input: z.record(z.string(), z.unknown()),
  output: z
    .record(z.string(), z.unknown())
    .describe("Every step's output merged, and what was recorded outside steps"),
  createdBy: z.string(),
  createdAt: time,
  startedAt: time.nullable(),
  finishedAt: time.nullable(),
  error: jobError.nullable(),
  cancelRequested: z.boolean(),
  steps: z.array(jobStep),
};
/** A job as submitted: what a lifecycle or plan operation answers with 202. */
export const job = describes<Job>()(z.strictObject(jobFields).meta({ id: 'Job', examples: [x.jobExample] }));
/** A job as the job endpoints show it: also whether it may still be cancelled. */
export const presentedJob = z
  .strictObject({
    ...jobFields,
    cancel: z.strictObject({ cancellable: z.boolean(), reason: z.string().nullable() }),
  })
  .meta({ id: 'PresentedJob', examples: [x.presentedJobExample] });

export const alert = describes<Alert>()(
  z
    .strictObject({
      id,
      key: z.string(),
      severity: z.enum(['info', 'warning', 'critical']),
      message: z.string(),
      subjectType: z.enum(['host', 'machine', 'vault']),
      subjectId: id.nullable(),
      raisedAt: time,
      clearedAt: time.nullable(),
      acknowledged: z.strictObject({ by: z.string(), at: time }).nullable(),
    })
    .meta({ id: 'Alert', examples: [x.alertExample] }),
);

const apiTokenFields = { id, name: z.string(), role, createdAt: time, lastUsedAt: time.nullable() };
export const apiToken = describes<ApiToken>()(
  z.strictObject(apiTokenFields).meta({ id: 'ApiToken', examples: [x.apiTokenExample] }),
);

/** A token as created: the only time its secret is shown. */
export const createdToken = z
  .strictObject({ ...apiTokenFields, token: z.string() })
  .meta({ id: 'CreatedApiToken', examples: [x.createdApiTokenExample] });

const planAction = describes<RecoveryPlanAction>()(
  z.discriminatedUnion('kind', [
    z.strictObject({
      kind: z.literal('script'),
      name: z.string(),
      script: z.string(),
      timeoutSeconds: z.number().nullable(),
    }),
    z.strictObject({
      kind: z.literal('manual'),
      name: z.string(),
      text: z.string(),
      timeoutSeconds: z.null(),
    }),
    z.strictObject({
      kind: z.literal('inline-script'),
      name: z.string(),
      text: z.string(),
      timeoutSeconds: z.number().nullable(),
    }),
  ]),
);
const planGroupFields = {
  name: z.string(),
  machineIds: z.array(id),
  before: z.array(planAction),
  after: z.array(planAction),
};
const planFields = {
  id,
  name: z.string(),
  description: z.string(),
  groups: z.array(z.strictObject(planGroupFields)),
  createdAt: time,
  updatedAt: time,
};
export const recoveryPlan = describes<RecoveryPlan>()(
  z.strictObject(planFields).meta({ id: 'RecoveryPlan', examples: [x.recoveryPlanExample] }),
);
const rtoEstimate = describes<RtoEstimate>()(
  z.strictObject({
    seconds: z.number().nullable(),
    machinesWithoutHistory: z.array(z.string()),
    groups: z.array(z.strictObject({ name: z.string(), seconds: z.number() })),
    measured: z
      .strictObject({ drillId: id, seconds: z.number(), provenAt: time })
      .nullable()
      .describe(
        "the whole plan's RTO as its last passing drill measured it (order, actions, every machine up)",
      ),
  }),
);
const planOperationAvailability = describes<PlanOperationAvailability>()(
  z.strictObject({
    operation: z.enum(PLAN_OPERATIONS),
    allowed: z.boolean(),
    blockedBy: z.array(
      z.strictObject({
        machineId: id,
        machineName: z.string(),
        state: z.enum([...STABLE_STATES, ...IN_PROGRESS_STATES]),
      }),
    ),
  }),
);
/**
 * A plan as its endpoints show it: each group also names its machines; the
 * RTO estimate, the running job, and each operation against the machines' states.
 */
export const presentedPlan = z
  .strictObject({
    ...planFields,
    groups: z.array(z.strictObject({ ...planGroupFields, machineNames: z.array(z.string()) })),
    rtoEstimateSeconds: z.number().nullable(),
    rtoEstimate,
    activeJobId: id.nullable(),
    operations: z.array(planOperationAvailability),
  })
  .meta({ id: 'PresentedRecoveryPlan', examples: [x.presentedPlanExample] });

const planActionDocument = z.strictObject({
  kind: z.enum(['script', 'manual']),
  name: z.string(),
  text: z.string().optional(),
  script: z.string().optional(),
  timeoutSeconds: z.number().nullable().optional(),
});
export const planDocument = describes<PlanDocument>()(
  z
    .strictObject({
      name: z.string(),
      description: z.string().optional(),
      groups: z.array(
        z.strictObject({
          name: z.string(),
          machines: z.array(z.string()),
          before: z.array(planActionDocument).optional(),
          after: z.array(planActionDocument).optional(),
        }),
      ),
    })
    .meta({ id: 'PlanDocument', examples: [x.planDocumentExample] }),
);

export const registeredScript = withExample(
  describes<RegisteredScript>()(
    z.strictObject({
      name: z.string(),
      sizeBytes: z.number(),
      modifiedAt: time,
      sha256: z.string().nullable(),
      problem: z.string().nullable(),
    }),
  ),
  {
    name: 'smoke-web',
    sizeBytes: 812,
    modifiedAt: '2026-03-01T09:40:00.000Z',
    sha256: '3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b',
    problem: null,
  },
);

const scriptRunFields = {
  id,
  jobId: id,
  stepName: z.string(),
  planId: id,
  planName: z.string(),
  action: z.string(),
  script: z.string(),
  sha256: z.string(),
  startedBy: z.string(),
  runAs: z.string(),
  runAsNote: z.string(),
  startedAt: time,
  finishedAt: time.nullable(),
  state: z.enum(['running', 'succeeded', 'failed', 'timed-out', 'killed', 'interrupted']),
  exitCode: z.number().nullable(),
  signal: z.string().nullable(),
  outputBytes: z.number(),
  outputTruncated: z.boolean(),
};
/** A script run: `output` only for operators and admins (it may hold what the script read). */
export const scriptRun = describes<ScriptRunRecord>()(
  z.strictObject({ ...scriptRunFields, output: z.string() }),
)
  .or(z.strictObject(scriptRunFields))
  .meta({ id: 'ScriptRun', examples: [x.scriptRunExample] });

const powerState: z.ZodType<MachinePowerState> = z.enum(['running', 'paused', 'shut-off', 'absent']);
const machineStatusFields = { name: z.string(), state: powerState };
export const machineStatus = withExample(describes<MachineStatus>()(z.strictObject(machineStatusFields)), {
  name: 'web-01',
  state: 'running',
});
export const shutdownResult = withExample(
  describes<ShutdownResult>()(
    z.strictObject({
      ...machineStatusFields,
      outcome: z.enum(['powered-down', 'already-off', 'stopped', 'powered-off']),
      seconds: z.number(),
    }),
  ),
  { name: 'web-01', state: 'shut-off', outcome: 'powered-down', seconds: 7.5 },
);

const domainDisk = z.strictObject({
  target: z.string(),
  bus: z.string(),
  device: z.string(),
  source: z.discriminatedUnion('type', [
    z.strictObject({ type: z.enum(['file', 'block']), path: z.string() }),
    z.strictObject({
      type: z.literal('nbd'),
      export: z.string(),
      socket: z.string().nullable(),
      host: z.string().nullable(),
      port: z.number().nullable(),
    }),
    z.strictObject({ type: z.literal('none') }),
    z.strictObject({ type: z.literal('other'), description: z.string() }),
  ]),
  format: z.string().nullable(),
  virtualSizeBytes: z.number().nullable(),
  snapshots: z.number().nullable(),
  readOnly: z.boolean(),
});
const domainDescription = describes<DomainDescription>()(
  z.strictObject({
    name: z.string(),
    uuid: z.string().nullable(),
    cpus: z.number(),
    memoryMiB: z.number(),
    state: powerState,
    disks: z.array(domainDisk),
    nics: z.array(
      z.strictObject({
        mac: z.string().nullable(),
        network: z.string().nullable(),
        type: z.string(),
        model: z.string().nullable(),
      }),
    ),
    boot: z.discriminatedUnion('kind', [
      z.strictObject({
        kind: z.literal('kernel'),
        kernel: z.string(),
        initrd: z.string().nullable(),
        cmdline: z.string(),
      }),
      z.strictObject({ kind: z.literal('devices'), devices: z.array(z.string()) }),
    ]),
    consoleFile: z.string().nullable(),
    guestAgent: z.boolean(),
  }),
);
const inventoryFields = {
  driver: z.enum(['qemu', 'libvirt']),
  uri: z.string().nullable(),
  domains: z.array(domainDescription),
};
describes<HypervisorInventory>()(z.strictObject(inventoryFields));
/** A host's hypervisor inventory: asked of the host now, or what it last reported. */
export const hostCapacity = describes<HostCapacity>()(
  z
    .strictObject({
      hostId: id,
      protectedDisks: z.number().int().nonnegative(),
      maxProtectedDisks: z.number().int().nonnegative(),
      storage: z
        .strictObject({
          dataDir: z.string(),
          freeBytes: z.number().nonnegative(),
          totalBytes: z.number().nonnegative(),
        })
        .nullable(),
      storageUnavailable: z.string().nullable(),
      platform: z.string().nullable(),
      uptimeSeconds: z.number().nonnegative().nullable(),
    })
    .meta({ id: 'HostCapacity', examples: [x.hostCapacityExample] }),
);

export const hostDomains = describes<HostDomains>()(
  z
    .strictObject({ ...inventoryFields, hostId: id, source: z.enum(['host', 'vault']), reportedAt: time })
    .meta({ id: 'HostDomains', examples: [x.hostDomainsExample] }),
);

export const consistencyGroup = describes<ConsistencyGroup>()(
  z
    .strictObject({
      name: z.string(),
      machineIds: z.array(id),
      machineNames: z.array(z.string()),
      recoveryHostId: id.nullable(),
      osFamily: z.enum(['linux', 'windows', 'other']).nullable(),
    })
    .meta({ id: 'ConsistencyGroup', examples: [x.consistencyGroupExample] }),
);

export const groupCut = withExample(
  describes<GroupCut>()(
    z.strictObject({
      groupPointId: id,
      type: pointType,
      markers: z.array(z.strictObject({ hostId: id, time })),
      elapsedMs: z.number(),
    }),
  ),
  {
    groupPointId: 'gp-000031',
    type: 'crash-consistent',
    markers: [{ hostId: 'a1b2c3d4-0001-4e5f-8a9b-0c1d2e3f4a5b', time: '2026-03-02T09:30:00.120Z' }],
    elapsedMs: 42,
  },
);

/** Why a view ended: `stopped` (by its opener) and `expired` are the ends asked for. */
export const viewClosedReason = describes<ViewClosedReason>()(
  z
    .discriminatedUnion('kind', [
      z.strictObject({ kind: z.literal('stopped'), by: z.string() }),
      z.strictObject({ kind: z.literal('deleted'), by: z.string() }),
      z.strictObject({ kind: z.literal('expired') }),
      z.strictObject({ kind: z.literal('host-restarted') }),
    ])
    .meta({ id: 'ViewClosedReason', examples: [{ kind: 'expired' }, { kind: 'deleted', by: 'alice' }] }),
);

const accessViewFields = {
  id,
  machineId: id,
  machineName: z.string(),
  pointId: z.string(),
  pointTime: time,
  hostId: id,
  writable: z.boolean(),
  openedBy: z.string(),
  openedAt: time,
  expiresAt: time,
  disks: z.array(
    describes<AccessViewDisk>()(
      z.strictObject({
        diskId: z.string(),
        sizeBytes: z.number().int().nonnegative(),
        uri: z.string(),
        unixUri: z.string(),
      }),
    ),
  ),
  closedAt: time.nullable(),
  closedReason: viewClosedReason.nullable(),
};

/** An open view of a recovery point (`haven view`); its key is shown only when it is opened. */
export const accessView = describes<AccessView>()(
  z
    .strictObject(accessViewFields)
    .meta({ id: 'PointView', examples: [x.accessViewExample, x.closedAccessViewExample] }),
);

export const openedAccessView = describes<OpenedAccessView>()(
  z
    .strictObject({ ...accessViewFields, psk: z.strictObject({ identity: z.string(), keyHex: z.string() }) })
    .meta({ id: 'OpenedPointView', examples: [x.openedAccessViewExample] }),
);

const drillTarget = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('machine'), machineId: id }),
  z.strictObject({ kind: z.literal('plan'), planId: id }),
]);
const drillScheduleFields = {
  id,
  name: z.string(),
  target: drillTarget,
  cadence: z.discriminatedUnion('kind', [
    z.strictObject({ kind: z.literal('daily'), at: z.string(), timeZone: z.string() }),
    z.strictObject({ kind: z.literal('every'), hours: z.number() }),
  ]),
  point: z.enum(DRILL_POINT_CHOICES),
  testNetwork: z.string().nullable(),
  maxConcurrentPerHost: z.number(),
  timeLimitSeconds: z.number(),
  checks: z.strictObject({
    filesystems: z.boolean(),
    script: z.strictObject({ name: z.string(), timeoutSeconds: z.number() }).nullable(),
  }),
  onConflict: z.enum(['wait', 'skip']),
  enabled: z.boolean(),
  nextRunAt: time.nullable(),
  lastRunAt: time.nullable(),
  createdBy: z.string(),
  createdAt: time,
  updatedAt: time,
};
describes<DrillSchedule>()(z.strictObject(drillScheduleFields));
/** A drill schedule with the name of what it drills (null: that machine or plan is gone). */
export const presentedDrillSchedule = z
  .strictObject({ ...drillScheduleFields, targetName: z.string().nullable() })
  .meta({ id: 'DrillSchedule', examples: [x.presentedDrillScheduleExample] });

const drillPoint = z.strictObject({ id, time, type: pointType });
const drillCheck = describes<DrillCheck>()(
  z.strictObject({
    kind: z.enum(['boot', 'filesystems', 'application', 'plan']),
    name: z.string(),
    result: z.enum(['passed', 'failed', 'not-checked']),
    summary: z.string(),
    evidence: z
      .string()
      .nullable()
      .describe("null for viewers when it is a script's output (evidenceIsScriptOutput)"),
    evidenceIsScriptOutput: z.boolean(),
    startedAt: time,
    durationMs: z.number(),
  }),
);
const drillMachine = describes<DrillMachineResult>()(
  z.strictObject({
    machineId: id,
    machineName: z.string(),
    point: drillPoint.nullable(),
    copy: z
      .strictObject({ hostId: id, viewId: z.string(), vmName: z.string(), network: z.string() })
      .nullable(),
    rtoSeconds: z.number().nullable(),
    checks: z.array(drillCheck),
    cleanedUp: z.boolean(),
  }),
);
/** A drill: a test failover the vault ran (by schedule or by hand) with its checks and clean-up. */
export const drillRun = describes<DrillRun>()(
  z
    .strictObject({
      id,
      scheduleId: id.nullable(),
      target: drillTarget,
      targetName: z.string(),
      jobId: id.nullable(),
      state: z.enum(DRILL_STATES),
      reason: z.string().nullable(),
      machines: z.array(drillMachine),
      rtoSeconds: z.number().nullable(),
      checks: z
        .array(drillCheck)
        .describe("the run's own checks, apart from its machines': a plan drill's order"),
      createdBy: z.string(),
      createdAt: time,
      startedAt: time.nullable(),
      endedAt: time.nullable(),
    })
    .meta({ id: 'Drill', examples: [x.drillRunExample] }),
);
export const startedDrill = z.strictObject({ drill: drillRun, job });

const checkCounts = z.strictObject({ passed: z.number(), failed: z.number(), notChecked: z.number() });
export const drillReport = describes<DrillReport>()(
  z
    .strictObject({
      drill: drillRun,
      scheduleName: z.string().nullable(),
      startedBy: z.string(),
      durationSeconds: z.number().nullable(),
      checks: checkCounts,
      scriptOutputIncluded: z.boolean(),
      generatedAt: time,
    })
    .meta({ id: 'DrillReport', examples: [x.drillReportExample] }),
);

const drillProof = describes<DrillProof>()(
  z.strictObject({
    drillId: id,
    provenAt: time,
    rtoSeconds: z.number().nullable(),
    points: z.array(z.strictObject({ machineId: id, machineName: z.string(), point: drillPoint })),
    checks: checkCounts,
  }),
);
export const targetProof = describes<TargetProof>()(
  z
    .strictObject({
      target: drillTarget,
      lastProven: drillProof.nullable(),
      lastDrill: z
        .strictObject({
          id,
          state: z.enum(DRILL_STATES),
          reason: z.string().nullable(),
          endedAt: time.nullable(),
        })
        .nullable(),
    })
    .meta({ id: 'DrillProof', examples: [x.targetProofExample] }),
);

/** What a 204 answers: nothing. */
export const noContent = z.null();

const resolution = z.literal(REPLICATION_RESOLUTIONS);

const replicationSample = describes<ReplicationSample>()(
  z.strictObject({
    at: time.describe('start of the sample'),
    resolutionSeconds: resolution,
    samples: z.number().int().describe('monitor figures in it (one per poll, 5 s apart)'),
    throughputBytesPerSec: z.number().describe('mean over the sample'),
    pendingBytes: z.number().describe('most bytes pending during the sample'),
    rpoSeconds: z.number().nullable().describe('worst RPO during the sample; null while no point exists'),
  }),
);

/** A machine's replication figures over time, as the vault kept them. */
export const replicationHistory = describes<ReplicationHistory>()(
  z.strictObject({
    machineId: id,
    since: time,
    resolutionSeconds: resolution,
    samples: z.array(replicationSample),
  }),
).meta({ id: 'ReplicationHistory', examples: [x.replicationHistoryExample] });
