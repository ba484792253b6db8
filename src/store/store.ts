import type { DrillRun, DrillSchedule, DrillState, DrillTarget } from '../domain/drill.ts';
import type {
  AccessView,
  Alert,
  AlertAcknowledgement,
  ApiToken,
  Host,
  Job,
  JobError,
  JobState,
  Machine,
  MachineState,
  NewAlert,
  Policy,
  RecoveryPlan,
  RecoveryPoint,
  ReplicationHealth,
  ReplicationSnapshot,
  Role,
  ScriptRunRecord,
  Site,
  SourceFence,
  StepState,
  ViewClosedReason,
} from '../domain/model.ts';
import type {
  ReplicationFigure,
  ReplicationResolution,
  ReplicationSample,
} from '../domain/replication-history.ts';
import type { HypervisorInventory } from '../hypervisor/hypervisor.ts';

/**
 * The vault's state, behind one interface with two implementations
 * (SQLite via node:sqlite, PostgreSQL via pg), both through Kysely.
 * Every method is one database operation (or one transaction): callers never
 * hold a transaction open across I/O to hosts.
 */
export interface Store {
  readonly dialect: 'sqlite' | 'postgres';

  sites: SiteRepository;
  hosts: HostRepository;
  enrolments: EnrolmentRepository;
  serverEnrolments: ServerEnrolmentRepository;
  serverBmcPasswords: ServerBmcPasswordRepository;
  tokens: TokenRepository;
  policies: PolicyRepository;
  machines: MachineRepository;
  recoveryPoints: RecoveryPointRepository;
  plans: PlanRepository;
  jobs: JobRepository;
  alerts: AlertRepository;
  settings: SettingsRepository;
  scriptRuns: ScriptRunRepository;
  drillSchedules: DrillScheduleRepository;
  drillRuns: DrillRunRepository;
  accessViews: AccessViewRepository;
  replicationHistory: ReplicationHistoryRepository;

  /** Consistent online copy of the whole state to `file` (SQLite backup / pg_dump). */
  backup(file: string): Promise<void>;
  close(): Promise<void>;
}

export interface SiteRepository {
  create(site: Site): Promise<void>;
  get(id: string): Promise<Site | undefined>;
  getByName(name: string): Promise<Site | undefined>;
  list(): Promise<Site[]>;
  update(site: Site): Promise<void>;
}

export interface HostRepository {
  create(host: Host, credentialHash: string): Promise<void>;
  get(id: string): Promise<Host | undefined>;
  getByName(name: string): Promise<Host | undefined>;
  list(): Promise<Host[]>;
  /** The stored hash of the host's secret (for control-channel authentication). */
  credentialHash(id: string): Promise<string | undefined>;
  update(host: Host): Promise<void>;
  recordHeartbeat(id: string, at: string): Promise<void>;
  /** Keeps the hypervisor inventory the host reported (shown while the host cannot be asked). */
  saveHypervisorInventory(id: string, inventory: HypervisorInventory, at: string): Promise<void>;
  hypervisorInventory(
    id: string,
  ): Promise<{ inventory: HypervisorInventory; reportedAt: string } | undefined>;
  delete(id: string): Promise<void>;
}

export interface EnrolmentToken {
  id: string;
  /** sha256 of the secret; the secret itself is shown once and never stored. */
  secretHash: string;
  siteId: string;
  hostName: string | null;
  createdBy: string;
  createdAt: string;
  expiresAt: string;
  usedAt: string | null;
  usedByHostId: string | null;
}

export interface EnrolmentRepository {
  create(token: EnrolmentToken): Promise<void>;
  get(id: string): Promise<EnrolmentToken | undefined>;
  /** Marks the token used if it is unused and unexpired; false otherwise (single use, race-free). */
  consume(id: string, hostId: string, at: string): Promise<boolean>;
  list(): Promise<EnrolmentToken[]>;
}

/** A physical server's one-time enrolment token (its agent redeems it through the server's primary host). */
export interface ServerEnrolmentToken {
  id: string;
  /** sha256 of the secret; the secret itself is shown once and never stored. */
  secretHash: string;
  machineId: string;
  createdBy: string;
  createdAt: string;
  expiresAt: string;
  usedAt: string | null;
  /** A newer token was issued for the machine: this one no longer works. */
  replacedAt: string | null;
}

export interface ServerEnrolmentRepository {
  /** Stores `token` and, in the same transaction, marks the machine's other unused tokens replaced. */
  issue(token: ServerEnrolmentToken): Promise<void>;
  get(id: string): Promise<ServerEnrolmentToken | undefined>;
  /** Marks the token used if it is unused, not replaced and unexpired; false otherwise (single use, race-free). */
  consume(id: string, at: string): Promise<boolean>;
}

/** The password of each server's BMC: read only to hand it to the server's host for one call; never shown. */
export interface ServerBmcPasswordRepository {
  get(machineId: string): Promise<string | undefined>;
  set(machineId: string, password: string, at: string): Promise<void>;
  delete(machineId: string): Promise<void>;
}

export interface StoredApiToken extends ApiToken {
  secretHash: string;
}

export interface TokenRepository {
  create(token: StoredApiToken): Promise<void>;
  getBySecretHash(secretHash: string): Promise<StoredApiToken | undefined>;
  list(): Promise<ApiToken[]>;
  touch(id: string, at: string): Promise<void>;
  delete(id: string): Promise<void>;
  countByRole(role: Role): Promise<number>;
}

export interface PolicyRepository {
  create(policy: Policy): Promise<void>;
  get(id: string): Promise<Policy | undefined>;
  getByName(name: string): Promise<Policy | undefined>;
  list(): Promise<Policy[]>;
  update(policy: Policy): Promise<void>;
  delete(id: string): Promise<void>;
}

export interface MachineFilter {
  state?: MachineState;
  hostId?: string;
  limit?: number;
  offset?: number;
}

export interface MachineRepository {
  create(machine: Machine): Promise<void>;
  get(id: string): Promise<Machine | undefined>;
  getByName(name: string): Promise<Machine | undefined>;
  list(filter?: MachineFilter): Promise<Machine[]>;
  update(machine: Machine): Promise<void>;
  /**
   * Compare-and-set of the lifecycle state: succeeds only if the machine is
   * still in `from` (UPDATE … WHERE id = ? AND state = from), and sets
   * current_job_id to `jobId` (null when the job ends). A stable state never
   * has a job running, so this alone makes two operators racing on one machine
   * safe: exactly one wins.
   */
  transition(
    id: string,
    from: MachineState,
    to: MachineState,
    jobId: string | null,
    at: string,
  ): Promise<boolean>;
  /**
   * Writes only the replication snapshot and health (the monitor's columns):
   * no lost update of other fields. With `seen`, only while the machine is
   * still in that state between those hosts: a status asked for before a
   * failover, failback or reprotect says nothing of the replication after it,
   * so it must not land on the machine (false; nothing written).
   */
  recordReplication(
    id: string,
    snapshot: ReplicationSnapshot | null,
    health: ReplicationHealth,
    seen?: Pick<Machine, 'state' | 'activeHostId' | 'recoveryHostId'>,
  ): Promise<boolean>;
  /**
   * Writes only whether the source a failover left behind was verified
   * stopped: the vault records it while a job may be saving the machine.
   */
  recordSourceFence(id: string, fence: SourceFence | null): Promise<void>;
  /** Number of disks protected with `hostId` as recovery host (SPEC §5 limit). */
  countProtectedDisks(recoveryHostId: string): Promise<number>;
  delete(id: string): Promise<void>;
}

export interface RecoveryPointRepository {
  add(point: RecoveryPoint): Promise<void>;
  list(machineId: string): Promise<RecoveryPoint[]>;
  get(id: string): Promise<RecoveryPoint | undefined>;
  /** Deletes every point of the machine except `keepId` (commit, SPEC §3). */
  deleteAllExcept(machineId: string, keepId: string | null): Promise<number>;
}

export interface PlanRepository {
  create(plan: RecoveryPlan): Promise<void>;
  get(id: string): Promise<RecoveryPlan | undefined>;
  getByName(name: string): Promise<RecoveryPlan | undefined>;
  list(): Promise<RecoveryPlan[]>;
  update(plan: RecoveryPlan): Promise<void>;
  delete(id: string): Promise<void>;
}

export interface JobFilter {
  state?: JobState;
  targetId?: string;
  limit?: number;
}

export interface JobStepPatch {
  state?: StepState;
  progress?: number;
  message?: string | null;
  startedAt?: string | null;
  finishedAt?: string | null;
  error?: JobError | null;
  /** The step's whole output (the engine merges patches into it). */
  output?: Record<string, unknown>;
}

export interface JobPatch {
  state?: JobState;
  progress?: number;
  /** What is recorded outside the job's steps (see `outputOutsideSteps`): steps keep their own. */
  output?: Record<string, unknown>;
  startedAt?: string | null;
  finishedAt?: string | null;
  error?: JobError | null;
  cancelRequested?: boolean;
}

export interface JobRepository {
  /** Inserts the job and its steps (all 'pending'). */
  create(job: Job): Promise<void>;
  get(id: string): Promise<Job | undefined>;
  list(filter?: JobFilter): Promise<Job[]>;
  update(id: string, patch: JobPatch): Promise<void>;
  updateStep(jobId: string, index: number, patch: JobStepPatch): Promise<void>;
  /**
   * Claims one runnable job for `workerId` until `leaseUntil`: a queued job, or
   * a running job whose lease has expired (its worker died). PostgreSQL uses
   * `FOR UPDATE SKIP LOCKED` so several vaults can share the queue.
   * Returns the claimed job with its steps, or undefined.
   */
  claim(workerId: string, now: string, leaseUntil: string): Promise<Job | undefined>;
  /** Extends the lease; false if the job is no longer held by `workerId`. */
  renewLease(id: string, workerId: string, leaseUntil: string): Promise<boolean>;
  /**
   * Ends every running job's lease so they can be claimed at once. Only for a
   * vault that is the sole worker on its database (SQLite), at startup: the
   * jobs marked running there were left by its own previous, dead process.
   */
  expireLeases(): Promise<number>;
  /** Gives up the lease (job finished or waiting for an operator). */
  release(id: string, workerId: string): Promise<void>;
}

export interface AlertRepository {
  /** Raises the alert unless one with the same key is open; returns the open alert. */
  raise(alert: NewAlert): Promise<Alert>;
  /** Clears the open alert with this key, if any; returns whether one was cleared. */
  clear(key: string, at: string): Promise<boolean>;
  list(options?: { open?: boolean; limit?: number }): Promise<Alert[]>;
  get(id: string): Promise<Alert | undefined>;
  /** Records who acknowledged the alert, unless someone already did; returns the alert as stored. */
  acknowledge(id: string, acknowledgement: AlertAcknowledgement): Promise<Alert | undefined>;
}

/** Small key/value state: vault identity (TLS key and certificate), schema facts. */
export interface SettingsRepository {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string): Promise<void>;
}

export interface ScriptRunFilter {
  jobId?: string;
  limit?: number;
}

export interface ScriptRunRepository {
  create(run: ScriptRunRecord): Promise<void>;
  /** Records how a run ended. */
  finish(
    id: string,
    end: Pick<
      ScriptRunRecord,
      'finishedAt' | 'state' | 'exitCode' | 'signal' | 'output' | 'outputBytes' | 'outputTruncated'
    >,
  ): Promise<void>;
  /** A run still 'running' whose job has ended reads as 'interrupted' (the vault stopped while it ran). */
  get(id: string): Promise<ScriptRunRecord | undefined>;
  /** Newest first. */
  list(filter?: ScriptRunFilter): Promise<ScriptRunRecord[]>;
}

export interface DrillScheduleRepository {
  create(schedule: DrillSchedule): Promise<void>;
  get(id: string): Promise<DrillSchedule | undefined>;
  getByName(name: string): Promise<DrillSchedule | undefined>;
  /** By name; only the target's schedules when one is given. */
  list(filter?: { target?: DrillTarget }): Promise<DrillSchedule[]>;
  update(schedule: DrillSchedule): Promise<void>;
  delete(id: string): Promise<void>;
  /** Enabled schedules whose next run is at or before `now`, oldest due first. */
  due(now: string): Promise<DrillSchedule[]>;
  /**
   * Moves a due schedule on to its next run, only if its next run is still
   * `expectedNextRunAt`: of two vaults (or two ticks) that see it due, one starts the drill.
   */
  claimRun(
    id: string,
    expectedNextRunAt: string,
    next: { nextRunAt: string | null; lastRunAt: string },
  ): Promise<boolean>;
}

export interface DrillRunFilter {
  target?: DrillTarget;
  /** Runs that drilled this machine, also as a member of a plan drill. */
  machineId?: string;
  scheduleId?: string;
  states?: DrillState[];
  limit?: number;
}

export interface DrillRunRepository {
  create(run: DrillRun): Promise<void>;
  get(id: string): Promise<DrillRun | undefined>;
  getByJob(jobId: string): Promise<DrillRun | undefined>;
  /** Newest first. */
  list(filter?: DrillRunFilter): Promise<DrillRun[]>;
  update(run: DrillRun): Promise<void>;
  /** The newest ended run in which this machine's checks passed (a machine drill, or its part of a plan drill). */
  lastProven(machineId: string): Promise<DrillRun | undefined>;
  /** The newest passed run of a target (a plan's whole drill, or a machine's). */
  lastPassed(target: DrillTarget): Promise<DrillRun | undefined>;
  /**
   * For every machine any drill ran: its `lastProven` run and its newest run, in
   * two queries (the machine list and dashboard show all machines' proofs at once).
   */
  machineProofRuns(): Promise<MachineProofRuns[]>;
}

export interface MachineProofRuns {
  machineId: string;
  lastProven: DrillRun | undefined;
  newest: DrillRun;
}

export interface AccessViewRepository {
  add(view: AccessView): Promise<void>;
  get(id: string): Promise<AccessView | undefined>;
  /** Open views only when `open` (of one machine, or on one host, when given); oldest first. */
  list(filter?: { open?: boolean; machineId?: string; hostId?: string }): Promise<AccessView[]>;
  /** Marks an open view closed; false when it was closed already (the first reason stays). */
  close(id: string, at: string, reason: ViewClosedReason): Promise<boolean>;
}

export interface ReplicationHistoryRepository {
  /**
   * Adds one figure to its bucket of every tier and prunes the machine's
   * buckets older than each tier keeps (one transaction).
   */
  record(machineId: string, figure: ReplicationFigure): Promise<void>;
  /** The buckets of one tier from `since` on, oldest first. */
  list(
    machineId: string,
    resolutionSeconds: ReplicationResolution,
    since: string,
  ): Promise<ReplicationSample[]>;
}
