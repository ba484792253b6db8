/**
 * Haven's entities as plain data. These types are shared by the pure domain
 * rules, the store, the job engine and the API; none of them does I/O.
 * Times are ISO-8601 strings in UTC (they cross JSON and two databases).
 */
import type { JobState } from './job-states.ts';

export type SiteRole = 'primary' | 'recovery';

export interface Site {
  id: string;
  name: string;
  role: SiteRole;
  /** Network mapping: network name at this site -> network name at the other site. */
  networkMapping: Record<string, string>;
  /** Isolated network used for test failovers at this site. */
  testNetwork: string | null;
  createdAt: string;
}

export type HostStatus = 'pending' | 'connected' | 'unreachable';

export interface Host {
  id: string;
  name: string;
  siteId: string;
  status: HostStatus;
  /** Protocol endpoint for replication data (SPEC §6), reported by the host. */
  replicationAddress: string | null;
  /** SHA-256 fingerprint of the host's replication certificate, reported by the host; peers pin it. */
  replicationFingerprint: string | null;
  /** Most protected disks this host accepts as a recovery host (SPEC §5). */
  maxProtectedDisks: number;
  /** Capabilities the host reported (e.g. 'disk-service', 'replica-store', 'hypervisor:qemu'). */
  capabilities: string[];
  /** Folders the host attaches disk images from, as it last reported them; disk sources must be inside one. */
  storageFolders: string[];
  version: string | null;
  lastHeartbeatAt: string | null;
  enrolledAt: string;
}

export interface Policy {
  id: string;
  name: string;
  /** Alert when the newest recovery point is older than this. */
  rpoThresholdSeconds: number;
  /** How far back recovery points are kept. */
  retentionSeconds: number;
  /** How often app-consistent points are taken; 0 = never. */
  appConsistentFrequencySeconds: number;
  /** Built-in policies (the automatic failback policy) cannot be edited or deleted. */
  builtIn: boolean;
  createdAt: string;
}

export interface Disk {
  /** Stable within the machine, e.g. 'disk0'. */
  id: string;
  /** Where the disk service serves it on the machine's host, once attached (other tools can attach to it). */
  nbdUri?: string | null;
  sizeBytes: number;
  /** Image path or identifier on the machine's current host. */
  source: string;
  /** Whether the disk has hypervisor snapshots (reprotect refuses those, SPEC §5). */
  hasSnapshots: boolean;
  /**
   * Set when the disk was discovered in an imported domain (not typed by an
   * operator): the domain's device, bus and image format ('qcow2', 'raw'...).
   */
  fromDomain?: { target: string; bus: string; format: string | null } | null;
  /** On a physical server: the block device md mirrors, e.g. /dev/sda (then also its `source`). */
  serverDevice?: string | null;
  /** On a physical server: the staging image of its NBD leg, where the primary host said it keeps it. */
  serverStagingImage?: string | null;
}

/**
 * A physical Linux server protected through the kernel's own write splitter:
 * each protected block device is an md raid1 of the server's own device and
 * an NBD leg (`--write-mostly`, over TLS) on an export of the primary-site
 * host's disk service. The server fails over as a VM booting its replicated
 * disks at the recovery site.
 */
export interface ServerSettings {
  /**
   * null: every write reaches the NBD leg before md acknowledges it (order
   * kept, LAN latency per write). n: md write-behind of up to n writes to the
   * leg, tracked by the write-intent bitmap: faster on slow links, but the
   * leg (and so a recovery point) may lack writes the server acknowledged.
   */
  writeBehind: number | null;
  /** nbd-client timeout: a cut link fails the NBD leg after this long instead of hanging the server's I/O. */
  nbdTimeoutSeconds: number;
  /** When the server agent enrolled (its client certificate was issued); null until it has. */
  enrolledAt: string | null;
  /**
   * The server's BMC, reached from its primary-site host: its power for a
   * verified fence, a planned shutdown and failback. Absent or null: none,
   * and Haven can never see the server's power. Its password is not here
   * (machine records are shown): the vault keeps it apart.
   */
  bmc?: ServerBmc | null;
}

/** Where and as whom a server's BMC is reached (IPMI v2.0 over LAN, `ipmitool -I lanplus`). */
export interface ServerBmc {
  protocol: 'ipmi';
  address: string;
  port: number;
  user: string;
  /**
   * The RMCP+ cipher suite (`ipmitool -C`, e.g. 3 or 17); absent or null:
   * ipmitool asks the BMC which it supports (a BMC without that command
   * costs several seconds per call).
   */
  cipherSuite?: number | null;
}

/** One protected block device of a server, as the primary host sees its NBD leg. */
export interface ServerLegState {
  diskId: string;
  sizeBytes: number;
  /** The server's NBD client is connected to the leg's export now. */
  connected: boolean;
  /**
   * What the md superblock the server last wrote on the leg says of the leg:
   * in-sync (the array is in sync and the leg a full member), resyncing (the
   * array's initial resync runs), recovering (the leg is being rebuilt, e.g.
   * re-added through the bitmap), unknown (no md superblock seen yet).
   */
  md: 'in-sync' | 'resyncing' | 'recovering' | 'unknown';
  /** Bytes of the device md recorded as done on the leg while resyncing or recovering. */
  syncedBytes: number | null;
  /** Recovery points are cut from the server's flushes only while the leg holds a consistent copy. */
  pointsAllowed: boolean;
  lastWriteAt: string | null;
}

/** The server agent's last report, as its primary host received it. */
export interface ServerAgentReport {
  receivedAt: string;
  hostname: string;
  agentVersion: string;
  /** The server is shutting down (an ordered shutdown). */
  stopping: boolean;
  disks: Array<{
    diskId: string;
    /** The md array on the server, e.g. /dev/md0. */
    array: string;
    /** md's view of the members, local first: '[UU]' both in sync, '[U_]' the NBD leg out. */
    legs: string;
    action: 'idle' | 'resync' | 'recovery' | 'degraded';
    progressPercent: number | null;
    /** Write-intent bitmap chunks still dirty (what a re-add will resend). */
    bitmapDirtyChunks: number | null;
    /** md's event count when the agent looked (what tells its report from a later superblock). */
    mdEvents?: number | null;
  }>;
  /** Sent by Haven's recovery environment (not the agent) during a failback onto the server. */
  failback?: ServerFailbackReport | null;
}

/** How a failback onto the server goes, as its recovery environment reports it. */
export interface ServerFailbackReport {
  phase: 'copying' | 'done' | 'failed';
  /** Bytes written onto the server's disks so far, of the bytes to write (diverged ranges and md's dirty chunks). */
  copiedBytes: number;
  totalBytes: number;
  elapsedMs: number;
  /** Why it failed. */
  problem: string | null;
}

/**
 * Live protection of a server, as its primary host reports it.
 * awaiting-enrolment: no agent enrolled; agent-silent: no report for longer
 * than allowed (the server or its link is down); syncing: a leg's initial
 * resync or recovery runs; in-sync: every leg verified in sync and the agent
 * reports every array whole; degraded: a leg is out (link cut, NBD failed).
 */
export interface ServerLinkSnapshot {
  state: 'awaiting-enrolment' | 'agent-silent' | 'syncing' | 'in-sync' | 'degraded';
  legs: ServerLegState[];
  agent: ServerAgentReport | null;
  problem: string | null;
  /** The last report of Haven's recovery environment since the host built it for a failback onto the server. */
  failback?: ServerFailbackReport | null;
}

/** The hypervisor domain a machine was imported from (`machines import`). */
export interface ImportedDomain {
  driver: 'libvirt';
  /** The host's libvirt connection URI, e.g. qemu:///system. */
  uri: string;
  /** The domain's name and UUID there. */
  domain: string;
  uuid: string | null;
  importedAt: string;
}

export type IpConfig =
  | { mode: 'dhcp' }
  | { mode: 'static'; address: string; prefixLength: number; gateway: string | null; dns: string[] };

export interface NicSettings {
  /** Network at the machine's current site. */
  network: string;
  /** Network at the recovery site; null means "use the site's network mapping". */
  recoveryNetwork: string | null;
  mac: string | null;
  ip: IpConfig;
}

export interface RecoverySettings {
  targetName: string;
  cpus: number;
  memoryMiB: number;
  nics: NicSettings[];
  /** Direct kernel boot (paths on the hosts), for machines that do not boot from their first disk. */
  boot?: { kernel: string; initrd: string | null; cmdline: string } | null;
}

/** A machine copy running from a point-in-time view of the replica. */
export interface RunningCopy {
  hostId: string;
  viewId: string;
  /** Name of the machine in the hypervisor. */
  vmName: string;
  pointId: string;
  pointTime: string;
  /** Disks as the copy sees them (the view's NBD exports). */
  disks: Array<{ diskId: string; nbdUri: string }>;
  startedAt: string;
  /**
   * Set once commit moved the copy's disks, live, off its view onto local
   * qcow2 images at its host (libvirt hosts): what it reads and writes from
   * then on. The view is closed after that.
   */
  localImages?: Array<{ diskId: string; image: string }> | null;
  /** The view was closed after its disks moved to `localImages`: nothing reads it any more. */
  viewClosed?: boolean;
}

export interface MachineRuntime {
  /** The drill copy of a test failover, on the isolated test network. */
  test: (RunningCopy & { network: string }) | null;
  /** The machine started at the other site by a failover; it runs from this view until failback. */
  failover: RunningCopy | null;
}

/**
 * What Haven knows about the copy a failover left behind at the source host:
 * whether it was verified stopped. A failover that could not verify it (host
 * unreachable, the fence or the check failed) goes on and leaves it
 * unverified; the vault fences it again when that host is back and records
 * when the hypervisor confirmed it off.
 */
export type SourceFence =
  | {
      verified: false;
      /** The host the source ran on, and its name in that host's hypervisor. */
      hostId: string;
      vmName: string;
      /** Why it is not verified stopped (the latest attempt's reason). */
      reason: string;
      /** The failover job that went on without it. */
      jobId: string;
      since: string;
      /** Fences tried since the host came back, and when the last one was. */
      attempts: number;
      lastAttemptAt: string | null;
    }
  | {
      verified: true;
      hostId: string;
      vmName: string;
      /** What the hypervisor reported when asked again after the fence. */
      state: 'shut-off' | 'absent';
      jobId: string;
      fencedAt: string;
      /** Fenced by the failover itself, or by the vault when the source's host came back. */
      by: 'failover' | 'host-returned';
    };

/** The states a machine rests in between operations; see lifecycle.ts for the table. */
export const STABLE_STATES = [
  'unprotected',
  'protected',
  'test-failover-active',
  'failed-over',
  'failover-committed',
  'reverse-protected',
  'failback-ready',
  'failed-back',
  'failback-committed',
] as const;
export type StableState = (typeof STABLE_STATES)[number];

/** The states a machine is in while an operation's job runs. */
export const IN_PROGRESS_STATES = [
  'enabling-replication',
  'disabling-replication',
  'starting-test-failover',
  'cleaning-up-test-failover',
  'failing-over',
  'changing-recovery-point',
  'committing',
  'reprotecting',
  'synchronizing-failback',
  'completing-failover',
  'failing-back',
  'resynchronizing',
] as const;
export type InProgressState = (typeof IN_PROGRESS_STATES)[number];

/** Every state a protected machine can be in. */
export type MachineState = StableState | InProgressState;

export type ReplicationHealth = 'healthy' | 'warning' | 'critical' | 'unknown';

/**
 * One disk of a machine protected through QEMU's active mirror (an imported
 * libvirt domain): `armed` once every write reaches its sink before it
 * completes and the sink is ready (points are cut), `copying` while QEMU's
 * background copy runs (no consistent point), `domain-off` while no QEMU runs
 * the domain (nothing writes; the last point stays good), `not-armed` with why.
 */
export interface MirroredDiskState {
  diskId: string;
  /** The guest's device name in the domain (e.g. 'vda'). */
  target: string;
  state: 'armed' | 'copying' | 'domain-off' | 'not-armed';
  problem: string | null;
  /** The background copy: bytes done of the bytes QEMU has to copy. */
  copy: { doneBytes: number; totalBytes: number } | null;
  /** The background copy is paused until the sender has shipped more of the sink's journal (flow control). */
  waitingForSender?: boolean;
  /** When the mirror was last armed (job started) in this agent's life, and how many times. */
  armedAt: string | null;
  arms: number;
  /**
   * The last time it was armed again after a break: why, whether the sink
   * compared QEMU's copy with the replica, and (once synced) the bytes it
   * journaled and skipped as already in the replica.
   */
  lastRearm: {
    at: string;
    reason: string;
    compared: boolean;
    journaledBytes: number | null;
    skippedBytes: number | null;
  } | null;
}

/** Live protection of a domain through QEMU's active mirror, as its host reports it. */
export interface MirrorSnapshot {
  domain: string;
  /** armed: every disk armed; syncing: the first copy runs; not-armed: a disk is not mirrored now. */
  state: 'armed' | 'syncing' | 'not-armed';
  /** An operator paused protection (for a live migration, a snapshot...): not armed until resumed. */
  paused?: boolean;
  disks: MirroredDiskState[];
  /** The newest point the host cut for the machine. */
  lastPointAt: string | null;
  /**
   * The point cut when the domain stopped while mirrored: everything it
   * wrote is before it. Null while the domain runs, and when the stop came
   * while a disk was not armed (its last writes may be missing).
   */
  stoppedPointAt?: string | null;
}

export interface ReplicationSnapshot {
  state: 'initial-sync' | 'resync' | 'streaming' | 'paused' | 'stopped' | 'error' | 'unreachable';
  /** 0..100 during initial replication or resync. */
  progress: number;
  /** While an initial copy or resync runs: bytes compared and copied of the bytes it has to. */
  copy?: { doneBytes: number; totalBytes: number } | null;
  /**
   * Seconds of writes that a failover now would lose: 0 when everything the
   * machine wrote is at the replica, else the age of the oldest write that is not.
   */
  rpoSeconds: number | null;
  pendingBytes: number;
  sentBytes: number;
  throughputBytesPerSec: number;
  lastError: string | null;
  updatedAt: string;
  /** Machines protected through QEMU's active mirror: the mirror of each disk. */
  mirror?: MirrorSnapshot | null;
  /** Physical servers: their NBD legs and their agent. */
  server?: ServerLinkSnapshot | null;
}

export interface Machine {
  id: string;
  name: string;
  /** Host the machine was originally protected from. */
  primaryHostId: string;
  /** Host holding its replica; null while unprotected. */
  recoveryHostId: string | null;
  /** Host the machine currently runs on (or would run on). */
  activeHostId: string;
  policyId: string | null;
  /** Consistency (replication) group, if any. */
  groupId: string | null;
  osFamily: 'linux' | 'windows' | 'other';
  state: MachineState;
  health: ReplicationHealth;
  disks: Disk[];
  recoverySettings: RecoverySettings;
  /** Id of the job currently running on this machine, if any. */
  currentJobId: string | null;
  /** The vault's latest view of its replication; null while not replicating. */
  replication: ReplicationSnapshot | null;
  /** Copies started by test failover and failover. */
  runtime: MachineRuntime;
  /** Whether the original primary machine still exists (failback target). */
  originalExists: boolean;
  /** The hypervisor domain it was imported from; absent for machines registered by hand. */
  importedFrom?: ImportedDomain | null;
  /** Set for a physical server (kind server): how it mirrors onto its NBD legs. Absent for VMs. */
  server?: ServerSettings | null;
  /** The source a failover left behind and whether it was verified stopped; absent before any failover. */
  sourceFence?: SourceFence | null;
  createdAt: string;
  updatedAt: string;
}

export type RecoveryPointType = 'crash-consistent' | 'app-consistent';

export interface RecoveryPoint {
  /** A name only: ids never order points (`…@999` is older than `…@1000`); `sequence` does. */
  id: string;
  machineId: string;
  time: string;
  /**
   * Where the point stands in its machine's replica history: the journal
   * sequence of its record (on the machine's first disk when it has several).
   * Orders one machine's points, also when their times are equal.
   */
  sequence: number;
  type: RecoveryPointType;
  /** Shared multi-machine point id when the point belongs to a consistency-group cut. */
  groupPointId: string | null;
  /** Whether the replica store has processed (applied) the data up to this point. */
  processed: boolean;
  /** Bytes of journal this point adds on top of the previous one. */
  sizeBytes: number;
}

/** Runs a script an admin registered on the vault (by its name in the scripts folder), bounded in time. */
export interface ScriptPlanAction {
  kind: 'script';
  name: string;
  /** The registered script's name. */
  script: string;
  timeoutSeconds: number | null;
}

/** Pauses the plan job until an operator resumes it. */
export interface ManualPlanAction {
  kind: 'manual';
  name: string;
  /** Instructions shown to the operator. */
  text: string;
  timeoutSeconds: null;
}

/**
 * A script action stored before scripts had to be registered by an admin: a
 * command any operator typed. It is never run; a plan holding one is refused
 * until it names a registered script instead.
 */
export interface InlineScriptPlanAction {
  kind: 'inline-script';
  name: string;
  text: string;
  timeoutSeconds: number | null;
}

export type RecoveryPlanAction = ScriptPlanAction | ManualPlanAction | InlineScriptPlanAction;

/** An executable in the vault's scripts folder, as the registry sees it. */
export interface RegisteredScript {
  name: string;
  sizeBytes: number;
  modifiedAt: string;
  /** null when the file cannot be run (see problem). */
  sha256: string | null;
  /** Why plans cannot use it (owner, mode, not a regular file), or null when they can. */
  problem: string | null;
}

/**
 * running: started and not ended (or the vault stopped while it ran: its job
 * then ended as interrupted and the run is shown as such); timed-out: killed
 * at its time limit; killed: ended by a signal (a cancelled job).
 */
export type ScriptRunState = 'running' | 'succeeded' | 'failed' | 'timed-out' | 'killed' | 'interrupted';

/** One run of a registered script by a plan job, kept durably. */
export interface ScriptRunRecord {
  id: string;
  jobId: string;
  stepName: string;
  planId: string;
  planName: string;
  action: string;
  script: string;
  /** The content that ran. */
  sha256: string;
  /** Who started the plan job. */
  startedBy: string;
  /** The local user it ran as, and why that one. */
  runAs: string;
  runAsNote: string;
  startedAt: string;
  finishedAt: string | null;
  state: ScriptRunState;
  exitCode: number | null;
  signal: string | null;
  /** Output (stdout and stderr interleaved); only operators and admins see it. */
  output: string;
  /** Bytes the script wrote in all; more than output holds when cut. */
  outputBytes: number;
  outputTruncated: boolean;
}

/** A script run as it is recorded when it starts: running, no output yet. */
export function startedScriptRun(
  run: Omit<
    ScriptRunRecord,
    'finishedAt' | 'state' | 'exitCode' | 'signal' | 'output' | 'outputBytes' | 'outputTruncated'
  >,
): ScriptRunRecord {
  return {
    ...run,
    finishedAt: null,
    state: 'running',
    exitCode: null,
    signal: null,
    output: '',
    outputBytes: 0,
    outputTruncated: false,
  };
}

export interface RecoveryPlanGroup {
  name: string;
  machineIds: string[];
  before: RecoveryPlanAction[];
  after: RecoveryPlanAction[];
}

export interface RecoveryPlan {
  id: string;
  name: string;
  description: string;
  groups: RecoveryPlanGroup[];
  createdAt: string;
  updatedAt: string;
}

export type { JobState };
export type StepState = 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped' | 'cancelled';

export interface JobError {
  code: string;
  message: string;
}

export interface JobStep {
  index: number;
  name: string;
  title: string;
  state: StepState;
  /** 0..100 */
  progress: number;
  message: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  error: JobError | null;
  /**
   * What this step recorded (`ctx.output`), kept only here; its job's output, as read, merges it.
   * Null for steps of jobs run before steps kept their own: their job's output is the whole record.
   */
  output: Record<string, unknown> | null;
}

/** A step as a new job holds it: pending, nothing done yet. */
export function pendingStep(index: number, name: string, title: string): JobStep {
  return {
    index,
    name,
    title,
    state: 'pending',
    progress: 0,
    message: null,
    startedAt: null,
    finishedAt: null,
    error: null,
    output: {},
  };
}

export interface Job {
  id: string;
  /** The job definition's kind, e.g. 'failover', 'vault-backup'. */
  kind: string;
  targetType: 'machine' | 'plan' | 'host' | 'vault';
  targetId: string | null;
  state: JobState;
  /** 0..100, overall. */
  progress: number;
  input: Record<string, unknown>;
  /**
   * Free-form results and notes (e.g. drill notes): every step's output merged
   * (later steps read what earlier ones found here), and what was recorded
   * outside steps. Only the latter is stored with the job (see `outputOutsideSteps`).
   */
  output: Record<string, unknown>;
  createdBy: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  error: JobError | null;
  cancelRequested: boolean;
  steps: JobStep[];
}

/**
 * What of a job's output no step recorded: all of it for a job from before
 * steps kept their own output, else what was added outside its steps.
 */
export function outputOutsideSteps(job: Pick<Job, 'output' | 'steps'>): Record<string, unknown> {
  if (job.steps.every((step) => step.output === null)) return job.output;
  const recorded = new Set(job.steps.flatMap((step) => Object.keys(step.output ?? {})));
  return Object.fromEntries(Object.entries(job.output).filter(([key]) => !recorded.has(key)));
}

export interface AccessViewDisk {
  diskId: string;
  sizeBytes: number;
  /** nbds://IDENTITY@HOST:PORT/EXPORT: TLS with the view's key only. */
  uri: string;
  /** The same export on the recovery host's Unix socket, for a client running there. */
  unixUri: string;
}

/** A recovery point opened to NBD clients (`haven view`, `haven export`), open or closed. */
export interface AccessView {
  id: string;
  machineId: string;
  machineName: string;
  pointId: string;
  pointTime: string;
  hostId: string;
  writable: boolean;
  openedBy: string;
  openedAt: string;
  expiresAt: string;
  disks: AccessViewDisk[];
  /** When it ended and why (both null while open). */
  closedAt: string | null;
  closedReason: ViewClosedReason | null;
}

/**
 * Why a view stopped being served. `stopped` and `expired` are the ends its
 * opener asked for; the others ended it under them (`haven view` exits
 * non-zero for those).
 */
export type ViewClosedReason =
  /** Closed by the token that opened it (Ctrl-C on `haven view`). */
  | { kind: 'stopped'; by: string }
  /** Closed by another token. */
  | { kind: 'deleted'; by: string }
  | { kind: 'expired' }
  /** Its host reconnected without it: the host agent restarted, and a view is kept only in its memory. */
  | { kind: 'host-restarted' };

/** A view's end in words, as the CLI and the portal say it. */
export function viewClosedInWords(reason: ViewClosedReason): string {
  switch (reason.kind) {
    case 'stopped':
      return `closed by ${reason.by}, who opened it`;
    case 'deleted':
      return `closed by ${reason.by}`;
    case 'expired':
      return 'expired';
    case 'host-restarted':
      return 'its host no longer serves it (the host agent restarted, and a view is kept only in its memory)';
  }
}

export type AlertSeverity = 'info' | 'warning' | 'critical';

export interface Alert {
  id: string;
  /** Stable key so a condition raises one alert and clears it, e.g. 'host-unreachable:<id>'. */
  key: string;
  severity: AlertSeverity;
  message: string;
  subjectType: 'host' | 'machine' | 'vault';
  subjectId: string | null;
  raisedAt: string;
  clearedAt: string | null;
  /** An operator has seen it: it stays open until its condition clears. */
  acknowledged: AlertAcknowledgement | null;
}

export interface AlertAcknowledgement {
  /** The token's name that acknowledged it. */
  by: string;
  at: string;
}

/** What raising an alert takes: a new alert is not acknowledged yet. */
export type NewAlert = Omit<Alert, 'acknowledged'>;

export type Role = 'admin' | 'operator' | 'viewer';

export interface ApiToken {
  id: string;
  name: string;
  role: Role;
  createdAt: string;
  lastUsedAt: string | null;
}

/**
 * Disk ids (and machine ids on a host) become file, folder and NBD export
 * names: one path component, no dots (so no `..`), nothing a URI or shell
 * reads differently.
 */
export const DISK_ID_PATTERN = /^[A-Za-z0-9_-]{1,60}$/;

/** What a physical server's block device path may hold (see isServerDevicePath). */
export const SERVER_DEVICE_PATTERN = /^\/dev\/[A-Za-z0-9_./:-]+$/;

/**
 * A physical server's block device as Haven takes it (at onboarding) and
 * writes it back (the recovery environment): an absolute path under /dev,
 * like /dev/sda or /dev/disk/by-path/pci-0000:00:1f.2-ata-1, never with `..`.
 */
export function isServerDevicePath(path: string): boolean {
  return SERVER_DEVICE_PATTERN.test(path) && !path.split('/').includes('..');
}

/**
 * The name the machine's hypervisor knows it by on its own host: the libvirt
 * domain it was imported from (which may differ from Haven's name for it),
 * else Haven's name, under which Haven defines the machines it runs.
 */
export function vmNameOf(machine: Pick<Machine, 'name' | 'importedFrom'>): string {
  return machine.importedFrom?.domain ?? machine.name;
}

/** What kind of machine it is: a VM Haven defines, an imported libvirt domain, or a physical server. */
export type MachineKind = 'vm' | 'libvirt' | 'server';

export function machineKindOf(machine: Pick<Machine, 'importedFrom' | 'server'>): MachineKind {
  if (machine.server) return 'server';
  return machine.importedFrom ? 'libvirt' : 'vm';
}

/** A physical server on its own hardware at its primary site (after a failover it runs as a VM). */
export function serverAtPrimary(
  machine: Pick<Machine, 'importedFrom' | 'server' | 'activeHostId' | 'primaryHostId'>,
): boolean {
  return machineKindOf(machine) === 'server' && machine.activeHostId === machine.primaryHostId;
}
