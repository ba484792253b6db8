import { randomUUID } from 'node:crypto';
import { isoNow } from '../../clock/index.ts';
import {
  cadenceProblems,
  type DrillCadence,
  type DrillChecks,
  type DrillConflictAction,
  type DrillPointChoice,
  type DrillSchedule,
  type DrillTarget,
  nextDrillRunAfter,
} from '../../domain/drill.ts';
import type { Problem } from '../../domain/problem.ts';
import { HavenError } from '../../errors/index.ts';
import type { VaultContext } from '../vault-context.ts';

/** A schedule as an operator writes it: the target by name or id. */
export interface DrillScheduleInput {
  name: string;
  target: { kind: 'machine'; machine: string } | { kind: 'plan'; plan: string };
  cadence: DrillCadence;
  point: DrillPointChoice;
  testNetwork: string | null;
  maxConcurrentPerHost: number;
  timeLimitSeconds: number;
  checks: DrillChecks;
  onConflict: DrillConflictAction;
  enabled: boolean;
}

type DrillProblem = Omit<Problem, 'code'> & { code: Problem['code'] | 'unknown_script' | 'not_found' };

/**
 * Every problem of a drill's checks that needs the vault to see: the script
 * is one an admin registered, and it ends within the drill's time limit.
 */
export async function drillCheckProblems(
  vault: VaultContext,
  checks: DrillChecks,
  timeLimitSeconds: number,
): Promise<DrillProblem[]> {
  const { script, boot } = checks;
  const problems: DrillProblem[] = [];
  if (boot?.consolePattern != null) {
    try {
      new RegExp(boot.consolePattern);
    } catch (error) {
      problems.push({
        field: 'checks.boot.consolePattern',
        code: 'invalid_format',
        message: `not a regular expression: ${(error as Error).message}`,
      });
    }
  }
  if (boot !== undefined && boot.timeoutSeconds >= timeLimitSeconds)
    problems.push({
      field: 'checks.boot.timeoutSeconds',
      code: 'out_of_range',
      message: `the boot check's ${boot.timeoutSeconds} s must be shorter than the drill's time limit of ${timeLimitSeconds} s`,
    });
  if (script === null) return problems;
  const scripts = await vault.scripts.registry.known();
  if (!scripts.names.has(script.name))
    problems.push({
      field: 'checks.script.name',
      code: 'unknown_script',
      message:
        `script '${script.name}' is not registered: an admin puts an executable file of that name in ` +
        `the vault's scripts folder (${scripts.dir}); 'haven scripts list' shows those drills can use`,
    });
  if (script.timeoutSeconds >= timeLimitSeconds)
    problems.push({
      field: 'checks.script.timeoutSeconds',
      code: 'out_of_range',
      message: `the script's ${script.timeoutSeconds} s must be shorter than the drill's time limit of ${timeLimitSeconds} s`,
    });
  return problems;
}

/** Refuses with every problem listed, naming the first. */
export function refuseProblems(what: string, problems: readonly DrillProblem[]): void {
  if (problems.length === 0) return;
  const first = problems[0]!;
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more problems)` : '';
  throw new HavenError('validation_failed', `${what} is refused: ${first.field}: ${first.message}${more}`, {
    field: first.field,
    problems,
  });
}

async function resolveTarget(
  vault: VaultContext,
  target: DrillScheduleInput['target'],
): Promise<{ target: DrillTarget; name: string } | DrillProblem> {
  const { store } = vault;
  if (target.kind === 'machine') {
    const m = (await store.machines.get(target.machine)) ?? (await store.machines.getByName(target.machine));
    return m
      ? { target: { kind: 'machine', machineId: m.id }, name: m.name }
      : {
          field: 'target.machine',
          code: 'not_found',
          message: `machine '${target.machine}' does not exist ('haven machines list' shows them)`,
        };
  }
  const p = (await store.plans.get(target.plan)) ?? (await store.plans.getByName(target.plan));
  return p
    ? { target: { kind: 'plan', planId: p.id }, name: p.name }
    : {
        field: 'target.plan',
        code: 'not_found',
        message: `recovery plan '${target.plan}' does not exist ('haven plans list' shows them)`,
      };
}

/**
 * The schedule the input describes, checked field by field (a 400 naming
 * each problem), with its next run computed: a new one, or `existing`
 * changed (its id, history and creator kept).
 */
export async function drillScheduleFrom(
  vault: VaultContext,
  input: DrillScheduleInput,
  existing: DrillSchedule | null,
  actor: string,
): Promise<DrillSchedule> {
  const resolved = await resolveTarget(vault, input.target);
  const problems: DrillProblem[] = [
    ...('field' in resolved ? [resolved] : []),
    ...cadenceProblems(input.cadence),
    ...(await drillCheckProblems(vault, input.checks, input.timeLimitSeconds)),
  ];
  refuseProblems(`Drill schedule '${input.name}'`, problems);
  if ('field' in resolved) throw new Error('unreachable');
  const other = await vault.store.drillSchedules.getByName(input.name);
  if (other && other.id !== existing?.id)
    throw new HavenError('conflict', `A drill schedule named '${input.name}' already exists`, {
      field: 'name',
      scheduleId: other.id,
    });
  const now = isoNow(vault.clock);
  const lastRunAt = existing?.lastRunAt ?? null;
  const nextRunAt = input.enabled
    ? new Date(
        nextDrillRunAfter(input.cadence, Date.parse(now), lastRunAt === null ? null : Date.parse(lastRunAt)),
      ).toISOString()
    : null;
  return {
    id: existing?.id ?? randomUUID(),
    name: input.name,
    target: resolved.target,
    cadence: input.cadence,
    point: input.point,
    testNetwork: input.testNetwork,
    maxConcurrentPerHost: input.maxConcurrentPerHost,
    timeLimitSeconds: input.timeLimitSeconds,
    checks: input.checks,
    onConflict: input.onConflict,
    enabled: input.enabled,
    nextRunAt,
    lastRunAt,
    createdBy: existing?.createdBy ?? actor,
    createdAt: existing?.createdAt ?? now,
    updatedAt: now,
  };
}
