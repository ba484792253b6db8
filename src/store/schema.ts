import type { ColumnType } from 'kysely';

/**
 * The one schema both dialects share. Column types are chosen to mean the same
 * on SQLite and PostgreSQL: JSON is text, times are ISO-8601 text (they sort
 * correctly as strings), booleans are `boolean` columns written as 0/1 (PostgreSQL
 * accepts '1'/'0' for boolean; SQLite stores the integer). Reads differ by
 * dialect (PostgreSQL returns true/false, and strings for bigint), which the
 * repositories hide with the codecs in `column-codec.ts`.
 */
export interface Database {
  sites: SitesTable;
  hosts: HostsTable;
  enrolment_tokens: EnrolmentTokensTable;
  server_enrolment_tokens: ServerEnrolmentTokensTable;
  server_bmc_passwords: ServerBmcPasswordsTable;
  api_tokens: ApiTokensTable;
  policies: PoliciesTable;
  machines: MachinesTable;
  recovery_points: RecoveryPointsTable;
  recovery_plans: RecoveryPlansTable;
  jobs: JobsTable;
  job_steps: JobStepsTable;
  alerts: AlertsTable;
  settings: SettingsTable;
  script_runs: ScriptRunsTable;
  drill_schedules: DrillSchedulesTable;
  drill_runs: DrillRunsTable;
  drill_run_machines: DrillRunMachinesTable;
  access_views: AccessViewsTable;
  replication_samples: ReplicationSamplesTable;
}

/** Written as 0/1, read as 0/1 (SQLite) or true/false (PostgreSQL). */
export type BooleanColumn = ColumnType<number | boolean, number, number>;
/** bigint: read as number (SQLite) or string (PostgreSQL). */
export type BigIntColumn = ColumnType<number | string, number, number>;
/** JSON document stored as text. */
export type JsonColumn = string;

export interface SitesTable {
  id: string;
  name: string;
  role: string;
  network_mapping: JsonColumn;
  test_network: string | null;
  created_at: string;
}

export interface HostsTable {
  id: string;
  name: string;
  site_id: string;
  status: string;
  replication_address: string | null;
  replication_fingerprint: string | null;
  max_protected_disks: number;
  capabilities: JsonColumn;
  storage_folders: JsonColumn | null;
  version: string | null;
  last_heartbeat_at: string | null;
  enrolled_at: string;
  credential_hash: string;
  hypervisor_inventory: JsonColumn | null;
  hypervisor_inventory_at: string | null;
}

export interface EnrolmentTokensTable {
  id: string;
  secret_hash: string;
  site_id: string;
  host_name: string | null;
  created_by: string;
  created_at: string;
  expires_at: string;
  used_at: string | null;
  used_by_host_id: string | null;
}

export interface ServerEnrolmentTokensTable {
  id: string;
  secret_hash: string;
  machine_id: string;
  created_by: string;
  created_at: string;
  expires_at: string;
  used_at: string | null;
  replaced_at: string | null;
}

export interface ServerBmcPasswordsTable {
  machine_id: string;
  password: string;
  updated_at: string;
}

export interface ApiTokensTable {
  id: string;
  name: string;
  role: string;
  secret_hash: string;
  created_at: string;
  last_used_at: string | null;
}

export interface PoliciesTable {
  id: string;
  name: string;
  rpo_threshold_seconds: number;
  retention_seconds: number;
  app_consistent_frequency_seconds: number;
  built_in: BooleanColumn;
  created_at: string;
}

export interface MachinesTable {
  id: string;
  name: string;
  primary_host_id: string;
  recovery_host_id: string | null;
  active_host_id: string;
  policy_id: string | null;
  group_id: string | null;
  os_family: string;
  state: string;
  health: string;
  disks: JsonColumn;
  recovery_settings: JsonColumn;
  replication: JsonColumn | null;
  runtime: JsonColumn | null;
  current_job_id: string | null;
  original_exists: BooleanColumn;
  imported_from: JsonColumn | null;
  server: JsonColumn | null;
  source_fence: JsonColumn | null;
  created_at: string;
  updated_at: string;
}

export interface RecoveryPointsTable {
  id: string;
  machine_id: string;
  time: string;
  type: string;
  group_point_id: string | null;
  processed: BooleanColumn;
  size_bytes: BigIntColumn;
  sequence: BigIntColumn;
}

export interface RecoveryPlansTable {
  id: string;
  name: string;
  description: string;
  groups: JsonColumn;
  created_at: string;
  updated_at: string;
}

export interface JobsTable {
  id: string;
  kind: string;
  target_type: string;
  target_id: string | null;
  state: string;
  progress: number;
  input: JsonColumn;
  output: JsonColumn;
  created_by: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  error: JsonColumn | null;
  cancel_requested: BooleanColumn;
  /** The vault worker holding the job, while it runs. */
  worker_id: string | null;
  /** The worker's claim expires at this time; another worker may then take the job over. */
  lease_until: string | null;
}

export interface JobStepsTable {
  job_id: string;
  idx: number;
  name: string;
  title: string;
  state: string;
  progress: number;
  message: string | null;
  started_at: string | null;
  finished_at: string | null;
  error: JsonColumn | null;
  /** Null for steps of jobs run before 0011: their job's output holds everything. */
  output: JsonColumn | null;
}

export interface AlertsTable {
  id: string;
  key: string;
  severity: string;
  message: string;
  subject_type: string;
  subject_id: string | null;
  raised_at: string;
  cleared_at: string | null;
  acknowledged_at: string | null;
  acknowledged_by: string | null;
}

export interface SettingsTable {
  key: string;
  value: string;
}

export interface ScriptRunsTable {
  id: string;
  job_id: string;
  step_name: string;
  plan_id: string;
  plan_name: string;
  action: string;
  script: string;
  sha256: string;
  started_by: string;
  run_as: string;
  run_as_note: string;
  started_at: string;
  finished_at: string | null;
  state: string;
  exit_code: number | null;
  signal: string | null;
  output: string;
  output_bytes: BigIntColumn;
  output_truncated: BooleanColumn;
}

export interface DrillSchedulesTable {
  id: string;
  name: string;
  target_kind: string;
  target_id: string;
  cadence: JsonColumn;
  point_choice: string;
  test_network: string | null;
  max_concurrent_per_host: number;
  time_limit_seconds: number;
  checks: JsonColumn;
  on_conflict: string;
  enabled: BooleanColumn;
  next_run_at: string | null;
  last_run_at: string | null;
  created_by: string;
  created_at: string;
  updated_at: string;
}

export interface DrillRunsTable {
  id: string;
  schedule_id: string | null;
  target_kind: string;
  target_id: string;
  target_name: string;
  job_id: string | null;
  state: string;
  reason: string | null;
  machines: JsonColumn;
  rto_seconds: number | null;
  checks: JsonColumn;
  created_by: string;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
}

export interface DrillRunMachinesTable {
  run_id: string;
  machine_id: string;
  passed: BooleanColumn;
  ended_at: string | null;
}

export interface AccessViewsTable {
  id: string;
  machine_id: string;
  machine_name: string;
  point_id: string;
  point_time: string;
  host_id: string;
  writable: BooleanColumn;
  opened_by: string;
  opened_at: string;
  expires_at: string;
  disks: JsonColumn;
  closed_at: string | null;
  /** A ViewClosedReason as JSON (free text before migration 0015). */
  closed_reason: JsonColumn | null;
}

/** One bucket of one resolution tier of a machine's replication history. */
export interface ReplicationSamplesTable {
  machine_id: string;
  resolution_seconds: number;
  bucket_at: string;
  samples: number;
  throughput: number;
  pending_bytes: BigIntColumn;
  rpo_seconds: number | null;
}
