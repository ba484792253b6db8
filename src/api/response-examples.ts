import type { DrillReport, DrillRun, DrillSchedule, TargetProof } from '../domain/drill.ts';
import type { LifecycleOperation } from '../domain/index.ts';
import type {
  AccessView,
  Alert,
  ApiToken,
  Host,
  Job,
  Machine,
  Policy,
  RecoveryPlan,
  RecoveryPoint,
  ScriptRunRecord,
  Site,
} from '../domain/model.ts';
import type { PlanDocument } from '../domain/recovery-plan-validation.ts';
import type { MirrorStatus } from '../host/host-services.ts';
import type { ConsistencyGroup } from '../vault/groups/index.ts';
import type { HostCapacity } from '../vault/host-capacity.ts';
import type { HostDomains } from '../vault/import-domain.ts';
import type { OpenedAccessView } from '../vault/point-access.ts';
import type { ServerEnrolmentIssued } from '../vault/servers/index.ts';

/**
 * One realistic example of each object the API answers with: the OpenAPI
 * document and docs/api.md show them (response-schemas.ts attaches each to
 * its schema). `satisfies` holds each to its type; a test validates each
 * against its schema.
 */

const MACHINE_ID = '3f6c2a9e-7d41-4b8a-9e2f-1c5d8b7a4e60';
const PRIMARY_HOST = 'a1b2c3d4-0001-4e5f-8a9b-0c1d2e3f4a5b';
const RECOVERY_HOST = 'a1b2c3d4-0002-4e5f-8a9b-0c1d2e3f4a5b';
const POLICY_ID = '9b8e7d6c-5a4b-4c3d-8e2f-1a0b9c8d7e6f';
const JOB_ID = '7e3f9a1c-2b4d-4e6f-8a0b-c1d2e3f4a5b6';
const PLAN_ID = '5d4c3b2a-1f0e-4d9c-8b7a-6e5f4d3c2b1a';
const POINT_ID = 'pt-000412';

export const siteExample = {
  id: 'dc2',
  name: 'dc2',
  role: 'recovery',
  networkMapping: { lan: 'lan-dr' },
  testNetwork: 'dc2-test',
  createdAt: '2026-03-01T08:00:00.000Z',
} satisfies Site;

export const hostExample = {
  id: RECOVERY_HOST,
  name: 'kvm-b',
  siteId: 'dc2',
  status: 'connected',
  replicationAddress: '10.0.2.11:8442',
  replicationFingerprint: 'sha256:5f:1c:9a:…',
  maxProtectedDisks: 64,
  capabilities: ['qemu', 'replica-store', 'nbd-views'],
  storageFolders: ['/var/lib/haven/images'],
  version: '0.1.0',
  lastHeartbeatAt: '2026-03-02T09:29:55.000Z',
  enrolledAt: '2026-03-01T08:05:00.000Z',
} satisfies Host;

export const policyExample = {
  id: POLICY_ID,
  name: 'default',
  rpoThresholdSeconds: 300,
  retentionSeconds: 86_400,
  appConsistentFrequencySeconds: 3600,
  builtIn: false,
  createdAt: '2026-03-01T08:00:00.000Z',
} satisfies Policy;

export const machineExample = {
  id: MACHINE_ID,
  name: 'web-01',
  primaryHostId: PRIMARY_HOST,
  recoveryHostId: RECOVERY_HOST,
  activeHostId: PRIMARY_HOST,
  policyId: POLICY_ID,
  groupId: null,
  osFamily: 'linux',
  state: 'protected',
  health: 'healthy',
  disks: [
    {
      id: 'disk0',
      nbdUri: null,
      sizeBytes: 21_474_836_480,
      source: '/var/lib/haven/images/web-01-disk0.img',
      hasSnapshots: false,
      fromDomain: null,
    },
  ],
  recoverySettings: {
    targetName: 'web-01',
    cpus: 2,
    memoryMiB: 2048,
    nics: [{ network: 'lan', recoveryNetwork: 'lan-dr', mac: '52:54:00:12:34:56', ip: { mode: 'dhcp' } }],
    boot: null,
  },
  currentJobId: null,
  replication: {
    state: 'streaming',
    progress: 1,
    copy: null,
    rpoSeconds: 4.2,
    pendingBytes: 65_536,
    sentBytes: 21_474_836_480,
    throughputBytesPerSec: 1_250_000,
    lastError: null,
    updatedAt: '2026-03-02T09:29:58.000Z',
    mirror: null,
  },
  runtime: { test: null, failover: null },
  originalExists: true,
  importedFrom: null,
  sourceFence: null,
  createdAt: '2026-03-01T08:10:00.000Z',
  updatedAt: '2026-03-02T09:29:58.000Z',
  allowedOperations: ['disable-replication', 'test-failover', 'failover', 'planned-failover', 'resync'],
} satisfies Machine & { allowedOperations: LifecycleOperation[] };

export const recoveryPointExample = {
  id: POINT_ID,
  machineId: MACHINE_ID,
  time: '2026-03-02T09:29:54.000Z',
  sequence: 412,
  type: 'crash-consistent',
  groupPointId: null,
  processed: true,
  sizeBytes: 1_048_576,
} satisfies RecoveryPoint;

export const jobExample = {
  id: JOB_ID,
  kind: 'test-failover',
  targetType: 'machine',
  targetId: MACHINE_ID,
  state: 'running',
  progress: 0.4,
  input: { recoveryPoint: { option: 'latest' } },
  output: { recoveryPoint: { id: POINT_ID, time: '2026-03-02T09:29:54.000Z', type: 'crash-consistent' } },
  createdBy: 'admin',
  createdAt: '2026-03-02T09:30:00.000Z',
  startedAt: '2026-03-02T09:30:00.100Z',
  finishedAt: null,
  error: null,
  cancelRequested: false,
  steps: [
    {
      index: 0,
      name: 'choose-point',
      title: 'Choose the recovery point',
      state: 'succeeded',
      progress: 1,
      message: `point ${POINT_ID} (2026-03-02T09:29:54Z)`,
      startedAt: '2026-03-02T09:30:00.100Z',
      finishedAt: '2026-03-02T09:30:00.300Z',
      error: null,
      output: { recoveryPoint: { id: POINT_ID, time: '2026-03-02T09:29:54.000Z', type: 'crash-consistent' } },
    },
    {
      index: 1,
      name: 'boot',
      title: 'Boot the test machine on the recovery host',
      state: 'running',
      progress: 0.2,
      message: null,
      startedAt: '2026-03-02T09:30:00.300Z',
      finishedAt: null,
      error: null,
      output: {},
    },
  ],
} satisfies Job;

export const presentedJobExample = { ...jobExample, cancel: { cancellable: true, reason: null } };

export const alertExample = {
  id: 'b6a5c4d3-e2f1-4a0b-9c8d-7e6f5a4b3c2d',
  key: `rpo:${MACHINE_ID}`,
  severity: 'warning',
  message: "Machine 'web-01': RPO 412 s is above its policy's 300 s",
  subjectType: 'machine',
  subjectId: MACHINE_ID,
  raisedAt: '2026-03-02T09:20:00.000Z',
  clearedAt: null,
  acknowledged: { by: 'ops', at: '2026-03-02T09:22:00.000Z' },
} satisfies Alert;

export const apiTokenExample = {
  id: 'e1d2c3b4-a5f6-4e7d-8c9b-0a1f2e3d4c5b',
  name: 'ci-reader',
  role: 'viewer',
  createdAt: '2026-03-01T09:00:00.000Z',
  lastUsedAt: '2026-03-02T09:15:00.000Z',
} satisfies ApiToken;

export const createdApiTokenExample = { ...apiTokenExample, lastUsedAt: null, token: 'hvn_Zk3…' };

export const recoveryPlanExample = {
  id: PLAN_ID,
  name: 'web tier',
  description: 'Database first, then the web servers',
  groups: [
    {
      name: 'web',
      machineIds: [MACHINE_ID],
      before: [
        { kind: 'manual', name: 'check DNS', text: 'Point www at the recovery site', timeoutSeconds: null },
      ],
      after: [{ kind: 'script', name: 'smoke test', script: 'smoke-web', timeoutSeconds: 120 }],
    },
  ],
  createdAt: '2026-03-01T10:00:00.000Z',
  updatedAt: '2026-03-01T10:00:00.000Z',
} satisfies RecoveryPlan;

export const presentedPlanExample = {
  ...recoveryPlanExample,
  groups: recoveryPlanExample.groups.map((g) => ({ ...g, machineNames: ['web-01'] })),
  rtoEstimateSeconds: 95,
  rtoEstimate: {
    seconds: 95,
    machinesWithoutHistory: [],
    groups: [{ name: 'web', seconds: 95 }],
    measured: {
      drillId: 'c4d5e6f7-a8b9-4c0d-9e1f-2a3b4c5d6e7f',
      seconds: 88.2,
      provenAt: '2026-03-02T01:01:30.000Z',
    },
  },
  activeJobId: null,
  operations: [
    { operation: 'test-failover', allowed: true, blockedBy: [] },
    {
      operation: 'commit',
      allowed: false,
      blockedBy: [{ machineId: machineExample.id, machineName: 'web-01', state: 'protected' }],
    },
  ],
};

export const planDocumentExample = {
  name: 'web tier',
  description: 'Database first, then the web servers',
  groups: [
    {
      name: 'web',
      machines: ['web-01'],
      before: [{ kind: 'manual', name: 'check DNS', text: 'Point www at the recovery site' }],
      after: [{ kind: 'script', name: 'smoke test', script: 'smoke-web', timeoutSeconds: 120 }],
    },
  ],
} satisfies PlanDocument;

export const scriptRunExample = {
  id: 'c9d8e7f6-a5b4-4c3d-9e2f-1a0b9c8d7e6f',
  jobId: JOB_ID,
  stepName: 'group-0-after-0',
  planId: PLAN_ID,
  planName: 'web tier',
  action: 'smoke test',
  script: 'smoke-web',
  sha256: '3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b',
  startedBy: 'operator',
  runAs: 'haven-script',
  runAsNote: 'the vault runs as root: scripts run as haven-script',
  startedAt: '2026-03-02T09:31:40.000Z',
  finishedAt: '2026-03-02T09:31:42.000Z',
  state: 'succeeded',
  exitCode: 0,
  signal: null,
  output: 'GET https://www.example.com/ 200\n',
  outputBytes: 33,
  outputTruncated: false,
} satisfies ScriptRunRecord;

export const accessViewExample = {
  id: 'view-3f9c2a',
  machineId: MACHINE_ID,
  machineName: 'web-01',
  pointId: 'pt-000412',
  pointTime: '2026-03-02T09:15:00.000Z',
  hostId: RECOVERY_HOST,
  writable: false,
  openedBy: 'ops',
  openedAt: '2026-03-02T09:30:00.000Z',
  expiresAt: '2026-03-02T10:30:00.000Z',
  disks: [
    {
      diskId: 'disk0',
      sizeBytes: 21_474_836_480,
      uri: 'nbds://view-3f9c2a@10.0.2.11:10809/view-3f9c2a.disk0',
      unixUri: 'nbd+unix:///view-3f9c2a.disk0?socket=/var/lib/haven/views.sock',
    },
  ],
  closedAt: null,
  closedReason: null,
} satisfies AccessView;

export const closedAccessViewExample = {
  ...accessViewExample,
  closedAt: '2026-03-02T10:30:00.000Z',
  closedReason: { kind: 'expired' },
} satisfies AccessView;

export const openedAccessViewExample = {
  ...accessViewExample,
  psk: {
    identity: 'view-3f9c2a',
    keyHex: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
  },
} satisfies OpenedAccessView;

export const hostCapacityExample = {
  hostId: RECOVERY_HOST,
  protectedDisks: 12,
  maxProtectedDisks: 64,
  storage: { dataDir: '/var/lib/haven', freeBytes: 812_345_678_848, totalBytes: 1_999_844_147_200 },
  storageUnavailable: null,
  platform: 'linux-x64',
  uptimeSeconds: 864_000,
} satisfies HostCapacity;

export const hostDomainsExample = {
  hostId: PRIMARY_HOST,
  source: 'host',
  reportedAt: '2026-03-02T09:30:00.000Z',
  driver: 'libvirt',
  uri: 'qemu:///system',
  domains: [
    {
      name: 'db-01',
      uuid: '0d5e4f3a-2b1c-4d9e-8f7a-6b5c4d3e2f1a',
      cpus: 4,
      memoryMiB: 8192,
      state: 'running',
      disks: [
        {
          target: 'vda',
          bus: 'virtio',
          device: 'disk',
          source: { type: 'file', path: '/var/lib/libvirt/images/db-01.qcow2' },
          format: 'qcow2',
          virtualSizeBytes: 42_949_672_960,
          snapshots: 0,
          readOnly: false,
        },
      ],
      nics: [{ mac: '52:54:00:ab:cd:ef', network: 'default', type: 'network', model: 'virtio' }],
      boot: { kind: 'devices', devices: ['hd'] },
      consoleFile: null,
      guestAgent: true,
    },
  ],
} satisfies HostDomains;

export const consistencyGroupExample = {
  name: 'billing',
  machineIds: [MACHINE_ID],
  machineNames: ['web-01'],
  recoveryHostId: RECOVERY_HOST,
  osFamily: 'linux',
} satisfies ConsistencyGroup;

export const mirrorStatusExample = {
  machineId: MACHINE_ID,
  domain: 'db-01',
  state: 'armed',
  paused: false,
  disks: [
    {
      diskId: 'vda',
      target: 'vda',
      state: 'armed',
      problem: null,
      copy: null,
      armedAt: '2026-03-02T09:00:00.000Z',
      arms: 1,
      lastRearm: null,
    },
  ],
  lastPointAt: '2026-03-02T09:29:58.000Z',
  stoppedPointAt: null,
} satisfies MirrorStatus;

export const replicationHistoryExample = {
  machineId: MACHINE_ID,
  since: '2026-03-02T09:00:00.000Z',
  resolutionSeconds: 10,
  samples: [
    {
      at: '2026-03-02T09:00:00.000Z',
      resolutionSeconds: 10,
      samples: 2,
      throughputBytesPerSec: 5_242_880,
      pendingBytes: 65_536,
      rpoSeconds: 4,
    },
    {
      at: '2026-03-02T09:00:10.000Z',
      resolutionSeconds: 10,
      samples: 2,
      throughputBytesPerSec: 4_718_592,
      pendingBytes: 0,
      rpoSeconds: 3,
    },
  ],
};
const SCHEDULE_ID = '0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f';
const DRILL_ID = 'd1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6';

export const presentedDrillScheduleExample = {
  id: SCHEDULE_ID,
  name: 'nightly-web',
  target: { kind: 'machine', machineId: MACHINE_ID },
  targetName: 'web-01',
  cadence: { kind: 'daily', at: '02:00', timeZone: 'Europe/Amsterdam' },
  point: 'latest-app-consistent',
  testNetwork: null,
  maxConcurrentPerHost: 2,
  timeLimitSeconds: 1800,
  checks: { filesystems: true, script: { name: 'check-web', timeoutSeconds: 120 } },
  onConflict: 'wait',
  enabled: true,
  nextRunAt: '2026-03-03T01:00:00.000Z',
  lastRunAt: '2026-03-02T01:00:00.000Z',
  createdBy: 'ops',
  createdAt: '2026-03-01T10:00:00.000Z',
  updatedAt: '2026-03-01T10:00:00.000Z',
} satisfies DrillSchedule & { targetName: string | null };

export const drillRunExample = {
  id: DRILL_ID,
  scheduleId: SCHEDULE_ID,
  target: { kind: 'machine', machineId: MACHINE_ID },
  targetName: 'web-01',
  jobId: JOB_ID,
  state: 'passed',
  reason: null,
  machines: [
    {
      machineId: MACHINE_ID,
      machineName: 'web-01',
      point: { id: POINT_ID, time: '2026-03-02T00:59:12.000Z', type: 'app-consistent' },
      copy: {
        hostId: RECOVERY_HOST,
        viewId: 'drill-3f6c2a9e-d1e2f3a4',
        vmName: 'web-01-drill-d1e2f3a4',
        network: 'dc2-test',
      },
      rtoSeconds: 38.4,
      checks: [
        {
          kind: 'boot',
          name: 'boot',
          result: 'passed',
          summary: 'up: console output 31.2 s after start',
          evidence: 'Welcome to Debian GNU/Linux 12\nweb-01 login:',
          evidenceIsScriptOutput: false,
          startedAt: '2026-03-02T01:00:07.100Z',
          durationMs: 31_200,
        },
        {
          kind: 'application',
          name: 'script check-web',
          result: 'passed',
          summary: 'exit 0 after 2.1 s',
          evidence: 'GET / 200 OK; 1204 orders',
          evidenceIsScriptOutput: true,
          startedAt: '2026-03-02T01:00:38.500Z',
          durationMs: 2100,
        },
      ],
      cleanedUp: true,
    },
  ],
  rtoSeconds: 38.4,
  checks: [],
  createdBy: 'scheduler',
  createdAt: '2026-03-02T01:00:00.000Z',
  startedAt: '2026-03-02T01:00:00.000Z',
  endedAt: '2026-03-02T01:00:52.000Z',
} satisfies DrillRun;

export const drillReportExample = {
  drill: drillRunExample,
  scheduleName: 'nightly-web',
  startedBy: "schedule 'nightly-web'",
  durationSeconds: 52,
  checks: { passed: 2, failed: 0, notChecked: 0 },
  scriptOutputIncluded: true,
  generatedAt: '2026-03-02T09:30:00.000Z',
} satisfies DrillReport;

export const targetProofExample = {
  target: { kind: 'machine', machineId: MACHINE_ID },
  lastProven: {
    drillId: DRILL_ID,
    provenAt: '2026-03-02T01:00:52.000Z',
    rtoSeconds: 38.4,
    points: [
      {
        machineId: MACHINE_ID,
        machineName: 'web-01',
        point: { id: POINT_ID, time: '2026-03-02T00:59:12.000Z', type: 'app-consistent' },
      },
    ],
    checks: { passed: 2, failed: 0, notChecked: 0 },
  },
  lastDrill: { id: DRILL_ID, state: 'passed', reason: null, endedAt: '2026-03-02T01:00:52.000Z' },
} satisfies TargetProof;

const SERVER_ID = '8c7b6a59-4e3d-4c2b-9a18-07f6e5d4c3b2';

export const serverMachineExample = {
  ...machineExample,
  id: SERVER_ID,
  name: 'db-01',
  recoveryHostId: null,
  policyId: null,
  state: 'unprotected',
  health: 'unknown',
  disks: [
    {
      id: 'disk0',
      sizeBytes: 68_719_476_736,
      source: '/dev/sda',
      serverDevice: '/dev/sda',
      hasSnapshots: false,
    },
  ],
  recoverySettings: {
    targetName: 'db-01',
    cpus: 4,
    memoryMiB: 8192,
    nics: [{ network: 'lan', recoveryNetwork: null, mac: null, ip: { mode: 'dhcp' } }],
  },
  replication: null,
  server: {
    writeBehind: null,
    nbdTimeoutSeconds: 30,
    enrolledAt: null,
    bmc: { protocol: 'ipmi', address: '10.0.9.21', port: 623, user: 'haven', cipherSuite: null },
  },
  createdAt: '2026-03-02T10:00:00.000Z',
  updatedAt: '2026-03-02T10:00:00.000Z',
  allowedOperations: ['enable-replication'],
} satisfies Machine & { allowedOperations: LifecycleOperation[] };

const SERVER_TOKEN = 'hvs_4d2c9e1a.Zm9vYmFy…';

export const serverEnrolmentExample = {
  token: SERVER_TOKEN,
  expiresAt: '2026-03-03T10:00:00.000Z',
  commands: [
    '# as root on the server; install the agent first: haven servers agent-script > /usr/local/sbin/haven-server-agent && chmod 755 /usr/local/sbin/haven-server-agent',
    'mkdir -p -m 700 /etc/haven',
    "cat > /etc/haven/server-ca.pem <<'HAVEN_SERVER_CA'",
    '-----BEGIN CERTIFICATE-----',
    'MIIBszCCAVmgAwIBAgIU…',
    '-----END CERTIFICATE-----',
    'HAVEN_SERVER_CA',
    `haven-server-agent enrol --agent 10.0.1.11:8444 --tls-hostname kvm-a.servers.haven --ca-file /etc/haven/server-ca.pem --token ${SERVER_TOKEN}`,
    'haven-server-agent setup',
    'haven-server-agent run',
  ],
  writeOrdering:
    'synchronous: md acknowledges a write once the NBD leg has it too, so every recovery point holds every write the server acknowledged before it (each write waits for the link to the primary-site host)',
} satisfies ServerEnrolmentIssued;
