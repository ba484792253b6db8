/**
 * Drills: test failovers the vault runs by itself, on a schedule, that boot a
 * recovery point in the isolated test network, check it and clean up — so
 * every protected machine and every recovery plan has a last proven point.
 * This module is the data and its rules (schedules, cadences, results);
 * running drills is the vault's (src/vault/drills).
 */
import type { Problem } from './problem.ts';

/** What a schedule drills: one machine, or a recovery plan with its order and actions. */
export type DrillTarget = { kind: 'machine'; machineId: string } | { kind: 'plan'; planId: string };

/**
 * How often: every day at a wall-clock time in a named time zone (the time
 * an operator means, also across daylight saving changes), or every N hours.
 */
export type DrillCadence = { kind: 'daily'; at: string; timeZone: string } | { kind: 'every'; hours: number };

/**
 * Which point a drill boots. `random-retained` samples the whole retained
 * history: over many drills every age of point gets proven, not only the newest.
 */
export type DrillPointChoice = 'latest-app-consistent' | 'latest-crash-consistent' | 'random-retained';
export const DRILL_POINT_CHOICES: readonly DrillPointChoice[] = [
  'latest-app-consistent',
  'latest-crash-consistent',
  'random-retained',
];

/** What a due drill does when its machine is already in a test failover an operator started. */
export type DrillConflictAction = 'wait' | 'skip';

/** The checks a drill runs. Every drill checks that its machine boots. */
export interface DrillChecks {
  /** What on the console says the machine is up, and how long to wait (default: any output within 120 s). */
  boot?: BootCheckSettings;
  /** Check every filesystem of the point on the recovery host, without booting. */
  filesystems: boolean;
  /** An admin's registered script, run in the test network with the drill machine's address. */
  script: { name: string; timeoutSeconds: number } | null;
}

export interface DrillSchedule {
  id: string;
  name: string;
  target: DrillTarget;
  cadence: DrillCadence;
  point: DrillPointChoice;
  /** Null: the recovery site's test network. */
  testNetwork: string | null;
  /** At most this many drills (of any schedule) at once on one recovery host. */
  maxConcurrentPerHost: number;
  /** The drill is cleaned up when it runs longer, and counts as failed. */
  timeLimitSeconds: number;
  checks: DrillChecks;
  onConflict: DrillConflictAction;
  enabled: boolean;
  /** When the scheduler starts the next drill (null: disabled). */
  nextRunAt: string | null;
  lastRunAt: string | null;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
}

/** A machine's own boot check: what on its console says it is up, and how long to wait for it. */
export interface BootCheckSettings {
  /** A regular expression matched against the console; null: any console output (or a heartbeat). */
  consolePattern: string | null;
  timeoutSeconds: number;
}
export const DEFAULT_BOOT_CHECK: BootCheckSettings = { consolePattern: null, timeoutSeconds: 120 };

export type DrillState =
  /** Due, waiting for a free slot on its recovery host or for a manual test failover to end. */
  | 'waiting'
  | 'running'
  | 'passed'
  | 'failed'
  /** The vault stopped while it ran (crash, restart): cleaned up on start, never counted as a pass. */
  | 'interrupted'
  /** Not run: its machine was busy (a manual test failover, a failover) and the schedule skips then. */
  | 'skipped'
  | 'cancelled';
export const DRILL_STATES = [
  'waiting',
  'running',
  'passed',
  'failed',
  'interrupted',
  'skipped',
  'cancelled',
] as const satisfies readonly DrillState[];
export const DRILL_END_STATES: ReadonlySet<DrillState> = new Set([
  'passed',
  'failed',
  'interrupted',
  'skipped',
  'cancelled',
]);

/** `not-checked`: Haven could not check it here (never counted as passed). */
export type DrillCheckResult = 'passed' | 'failed' | 'not-checked';

export type DrillCheckKind = 'boot' | 'filesystems' | 'application' | 'plan';

/** One check of a drill: its result in words, and the evidence an auditor can read. */
export interface DrillCheck {
  kind: DrillCheckKind;
  /** e.g. "boot", "filesystem vda1 (ext4)", "script check-records". */
  name: string;
  result: DrillCheckResult;
  summary: string;
  /** Console excerpt, tool or script output (bounded). Script output is for operators and admins only. */
  evidence: string | null;
  /** The evidence is a script's output (hidden from viewers). */
  evidenceIsScriptOutput: boolean;
  startedAt: string;
  durationMs: number;
}

/** The point a drill booted for one machine. */
export interface DrillPoint {
  id: string;
  time: string;
  type: 'crash-consistent' | 'app-consistent';
}

/** Where a drill's machine runs: kept with the run, so the clean-up finds it after any crash. */
export interface DrillCopy {
  hostId: string;
  /** The copy-on-write overlay of the point (a writable view; it pins the point against retention). */
  viewId: string;
  vmName: string;
  network: string;
}

/** One machine of a drill (a plan drill has several). */
export interface DrillMachineResult {
  machineId: string;
  machineName: string;
  point: DrillPoint | null;
  copy: DrillCopy | null;
  /** From the drill's start until the machine was up (its boot check passed). */
  rtoSeconds: number | null;
  checks: DrillCheck[];
  /** What the clean-up removed, and whether it verified it gone. */
  cleanedUp: boolean;
}

export interface DrillRun {
  id: string;
  scheduleId: string | null;
  target: DrillTarget;
  /** The machine's or plan's name when the drill ran. */
  targetName: string;
  jobId: string | null;
  state: DrillState;
  /** Why it failed, was interrupted, skipped or cancelled; or what it waits for. */
  reason: string | null;
  machines: DrillMachineResult[];
  /** A plan drill: from its start until every machine was up, through the plan's order and actions. */
  rtoSeconds: number | null;
  /** Checks of the run as a whole, apart from its machines': a plan drill's order and actions. */
  checks: DrillCheck[];
  createdBy: string;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
}

/** A drill passed when it ended that way and every check either passed or could not be checked. */
export function drillPassed(checks: readonly DrillCheck[]): boolean {
  return (
    checks.length > 0 &&
    checks.every((c) => c.result !== 'failed') &&
    checks.some((c) => c.result === 'passed')
  );
}

export const MIN_DRILL_EVERY_HOURS = 1;
export const MAX_DRILL_EVERY_HOURS = 24 * 31;
export const MIN_DRILL_TIME_LIMIT_SECONDS = 60;
export const MAX_DRILL_TIME_LIMIT_SECONDS = 24 * 3600;
export const MAX_DRILLS_PER_HOST = 16;

/** Whether `zone` is an IANA time zone this runtime knows. */
export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

const HH_MM = /^([01]\d|2[0-3]):([0-5]\d)$/;

/** Every problem of a cadence, each at its field. */
export function cadenceProblems(cadence: DrillCadence, field = 'cadence'): Problem[] {
  if (cadence.kind === 'every') {
    const { hours } = cadence;
    if (!Number.isInteger(hours)) {
      return [{ field: `${field}.hours`, code: 'not_integer', message: 'hours must be a whole number' }];
    }
    if (hours < MIN_DRILL_EVERY_HOURS || hours > MAX_DRILL_EVERY_HOURS) {
      return [
        {
          field: `${field}.hours`,
          code: 'out_of_range',
          message: `hours must be between ${MIN_DRILL_EVERY_HOURS} and ${MAX_DRILL_EVERY_HOURS}`,
        },
      ];
    }
    return [];
  }
  const problems: Problem[] = [];
  if (!HH_MM.test(cadence.at)) {
    problems.push({
      field: `${field}.at`,
      code: 'invalid_format',
      message: `'${cadence.at}' is not a time of day as HH:MM (24-hour), e.g. 02:00`,
    });
  }
  if (!isTimeZone(cadence.timeZone)) {
    problems.push({
      field: `${field}.timeZone`,
      code: 'invalid_format',
      message: `'${cadence.timeZone}' is not a time zone name, e.g. Europe/Amsterdam or UTC`,
    });
  }
  return problems;
}

/** The wall-clock parts of `ms` in `timeZone`. */
function wallClock(ms: number, timeZone: string) {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  }).formatToParts(new Date(ms));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return {
    year: get('year'),
    month: get('month'),
    day: get('day'),
    hour: get('hour'),
    minute: get('minute'),
    second: get('second'),
  };
}

/** The zone's offset from UTC at `ms`, in ms (wall clock minus UTC). */
function zoneOffsetMs(ms: number, timeZone: string): number {
  const w = wallClock(ms, timeZone);
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  return asUtc - (ms - (ms % 1000));
}

/**
 * The instant at which a wall-clock time occurs in a zone. A time skipped by
 * a daylight saving change (02:30 on the spring-forward night) moves forward
 * by the length of the gap (03:30), as Temporal's "compatible" rule does; a
 * time that occurs twice (autumn) runs once, at its first occurrence.
 */
function instantOf(
  date: { year: number; month: number; day: number },
  hour: number,
  minute: number,
  timeZone: string,
): number {
  const naive = Date.UTC(date.year, date.month - 1, date.day, hour, minute);
  // Two offsets around the wanted time cover both sides of a change.
  const candidates = [zoneOffsetMs(naive - 86_400_000, timeZone), zoneOffsetMs(naive + 86_400_000, timeZone)]
    .map((offset) => naive - offset)
    .filter((ms) => {
      const w = wallClock(ms, timeZone);
      return w.hour === hour && w.minute === minute;
    })
    .sort((a, b) => a - b);
  if (candidates.length > 0) return candidates[0]!;
  // In the gap: read with the offset before the change, which lands as far past the gap's end as the time was into it.
  return naive - zoneOffsetMs(naive - 86_400_000, timeZone);
}

/**
 * When a schedule with this cadence runs next, strictly after `afterMs`. An
 * `every` cadence counts from its last run (or `afterMs` when it never ran).
 */
export function nextDrillRunAfter(
  cadence: DrillCadence,
  afterMs: number,
  lastRunMs: number | null = null,
): number {
  if (cadence.kind === 'every') {
    const period = cadence.hours * 3_600_000;
    if (lastRunMs === null) return afterMs + period;
    let next = lastRunMs + period;
    // A vault that was down for several periods runs once, not once per missed period.
    if (next <= afterMs) next = afterMs + 1;
    return next;
  }
  const [hour, minute] = cadence.at.split(':').map(Number) as [number, number];
  const today = wallClock(afterMs, cadence.timeZone);
  for (let dayOffset = 0; dayOffset <= 2; dayOffset++) {
    const d = new Date(Date.UTC(today.year, today.month - 1, today.day + dayOffset));
    const at = instantOf(
      { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() },
      hour,
      minute,
      cadence.timeZone,
    );
    if (at > afterMs) return at;
  }
  throw new Error(
    `no next run of ${cadence.at} ${cadence.timeZone} after ${new Date(afterMs).toISOString()}`,
  );
}

/** A cadence in words: "daily at 02:00 Europe/Amsterdam", "every 6 h". */
export function describeCadence(cadence: DrillCadence): string {
  return cadence.kind === 'daily' ? `daily at ${cadence.at} ${cadence.timeZone}` : `every ${cadence.hours} h`;
}

/**
 * The address a drill's application check runs from, in the drill machine's
 * subnet (with its prefix): the subnet's last usable address, or the one
 * before it when the drill machine has that one. An isolated test network
 * holds only the drill's machines, which keep their production addresses, so
 * the top of the subnet (where gateways and hosts rarely sit) is free in
 * practice. Null for a subnet too small to hold both (/31, /32).
 */
export function drillProbeAddress(address: string, prefixLength: number): string | null {
  const octets = address.split('.').map(Number);
  if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) return null;
  if (!Number.isInteger(prefixLength) || prefixLength < 1 || prefixLength > 30) return null;
  const value = octets.reduce((n, o) => n * 256 + o, 0);
  const size = 2 ** (32 - prefixLength);
  const broadcast = Math.floor(value / size) * size + size - 1;
  const probe = broadcast - 1 === value ? broadcast - 2 : broadcast - 1;
  if (probe <= broadcast - size + 1) return null;
  const text = [24, 16, 8, 0].map((shift) => Math.floor(probe / 2 ** shift) % 256).join('.');
  return `${text}/${prefixLength}`;
}

/** How many checks ended each way. */
export interface DrillCheckCounts {
  passed: number;
  failed: number;
  notChecked: number;
}

export function countChecks(checks: readonly DrillCheck[]): DrillCheckCounts {
  return {
    passed: checks.filter((c) => c.result === 'passed').length,
    failed: checks.filter((c) => c.result === 'failed').length,
    notChecked: checks.filter((c) => c.result === 'not-checked').length,
  };
}

/** The last drill that proved a machine or plan: which point(s) came up, how fast, and its checks. */
export interface DrillProof {
  drillId: string;
  provenAt: string;
  rtoSeconds: number | null;
  points: { machineId: string; machineName: string; point: DrillPoint }[];
  checks: DrillCheckCounts;
}

/** A machine's or plan's proof of recoverability, and its newest drill whatever its outcome. */
export interface TargetProof {
  target: DrillTarget;
  lastProven: DrillProof | null;
  lastDrill: { id: string; state: DrillState; reason: string | null; endedAt: string | null } | null;
}

/**
 * The proof a run gives: of one machine (its own point, RTO and checks,
 * also as a member of a plan drill), or of the whole run (a plan's).
 */
export function proofOf(run: DrillRun, machineId?: string): DrillProof | null {
  const machines =
    machineId === undefined ? run.machines : run.machines.filter((m) => m.machineId === machineId);
  if (machines.length === 0 || run.endedAt === null) return null;
  return {
    drillId: run.id,
    provenAt: run.endedAt,
    rtoSeconds: machineId === undefined ? run.rtoSeconds : (machines[0]!.rtoSeconds ?? null),
    points: machines.flatMap((m) =>
      m.point === null ? [] : [{ machineId: m.machineId, machineName: m.machineName, point: m.point }],
    ),
    checks: countChecks(machineId === undefined ? drillRunChecks(run) : machines.flatMap((m) => m.checks)),
  };
}

/** Every check of a run: its machines', then the run's own (a plan drill's order). */
export function drillRunChecks(run: Pick<DrillRun, 'machines' | 'checks'>): DrillCheck[] {
  return [...run.machines.flatMap((m) => m.checks), ...run.checks];
}

/** A drill as its report shows it: the run, who started it, its length and the checks counted. */
export interface DrillReport {
  drill: DrillRun;
  /** The schedule's name when a schedule started it (null: started by hand, or the schedule is gone). */
  scheduleName: string | null;
  /** In words: "schedule 'nightly-web'" or the operator's token name. */
  startedBy: string;
  durationSeconds: number | null;
  checks: DrillCheckCounts;
  /** False for viewers: the evidence of application checks (a script's output) is left out. */
  scriptOutputIncluded: boolean;
  generatedAt: string;
}

/** The run without script output, as viewers see it: every result and summary, no evidence a script printed. */
export function withoutScriptOutput(run: DrillRun): DrillRun {
  return {
    ...run,
    machines: run.machines.map((m) => ({
      ...m,
      checks: m.checks.map((c) => (c.evidenceIsScriptOutput ? { ...c, evidence: null } : c)),
    })),
    checks: run.checks.map((c) => (c.evidenceIsScriptOutput ? { ...c, evidence: null } : c)),
  };
}
