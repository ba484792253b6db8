import { randomUUID } from 'node:crypto';
import { isoNow } from '../../clock/index.ts';
import {
  DEFAULT_BOOT_CHECK,
  type DrillChecks,
  type DrillPointChoice,
  type DrillRun,
  type DrillTarget,
} from '../../domain/drill.ts';
import type { Machine, RecoveryPlan } from '../../domain/model.ts';
import { planScriptProblems } from '../../domain/recovery-plan-validation.ts';
import { HavenError } from '../../errors/index.ts';
import { activePlanJobs, planMembers } from '../plans/request-plan-operation.ts';
import type { VaultContext } from '../vault-context.ts';
import type { DrillSettings } from './drill-job-input.ts';
import { PLAN_DRILL_JOB_KIND } from './plan-drill-steps.ts';

/** What a drill does: from its schedule, or as asked for by an operator. */
export interface DrillRequest {
  point: DrillPointChoice;
  testNetwork: string | null;
  checks: DrillChecks;
  timeLimitSeconds: number;
  scheduleId?: string | null;
  createdBy: string;
  /** A run the scheduler recorded as waiting: started as this run instead of a new one. */
  waitingRunId?: string;
}

/** Why the machine cannot be drilled now (naming it, its state and what is allowed), or null. */
async function machineDrillRefusal(vault: VaultContext, machine: Machine): Promise<HavenError | null> {
  if (machine.state !== 'protected' && machine.state !== 'test-failover-active') {
    return new HavenError(
      'operation_not_allowed',
      `machine '${machine.name}' is ${machine.state}: drills run on protected machines (their replica at the recovery site)`,
      { machineId: machine.id, state: machine.state, allowed: ['protected', 'test-failover-active'] },
    );
  }
  const [active] = await vault.store.drillRuns.list({ machineId: machine.id, states: ['running'], limit: 1 });
  if (active) {
    return new HavenError(
      'conflict',
      `machine '${machine.name}' is already in drill ${active.id.slice(0, 8)} (since ${active.startedAt}); wait for it to end or cancel its job`,
      { machineId: machine.id, drillId: active.id, jobId: active.jobId },
    );
  }
  return null;
}

/** Records the drill's run (or starts the waiting one) with its machines, then submits its job. */
async function startDrill(
  vault: VaultContext,
  target: DrillTarget & { name: string },
  machines: readonly Machine[],
  request: DrillRequest,
  submit: (settings: DrillSettings, job: { id: string; createdBy: string }) => Promise<unknown>,
): Promise<DrillRun> {
  const now = isoNow(vault.clock);
  const waiting = request.waitingRunId ? await vault.store.drillRuns.get(request.waitingRunId) : undefined;
  const id = waiting?.id ?? randomUUID();
  const jobId = randomUUID();
  const { name, ...drilled } = target;
  const run: DrillRun = {
    id,
    scheduleId: request.scheduleId ?? null,
    target: drilled as DrillTarget,
    targetName: name,
    jobId,
    state: 'running',
    reason: null,
    machines: machines.map((m) => ({
      machineId: m.id,
      machineName: m.name,
      point: null,
      copy: null,
      rtoSeconds: null,
      checks: [],
      cleanedUp: false,
    })),
    rtoSeconds: null,
    checks: [],
    createdBy: request.createdBy,
    createdAt: waiting?.createdAt ?? now,
    startedAt: now,
    endedAt: null,
  };
  if (waiting) await vault.store.drillRuns.update(run);
  else await vault.store.drillRuns.create(run);
  const settings: DrillSettings = {
    drillId: id,
    point: request.point,
    testNetwork: request.testNetwork,
    checks: request.checks,
    boot: request.checks.boot ?? DEFAULT_BOOT_CHECK,
    timeLimitSeconds: request.timeLimitSeconds,
  };
  await submit(settings, { id: jobId, createdBy: request.createdBy });
  return run;
}

/**
 * Starts a drill of a protected machine: records the run, then submits its
 * job. Refused (naming the machine, its state and what is allowed) when the
 * machine has no replica to drill or a drill of it already runs.
 */
export async function requestMachineDrill(
  vault: VaultContext,
  machine: Machine,
  request: DrillRequest,
): Promise<DrillRun> {
  const refusal = await machineDrillRefusal(vault, machine);
  if (refusal) throw refusal;
  return startDrill(
    vault,
    { kind: 'machine', machineId: machine.id, name: machine.name },
    [machine],
    request,
    (settings, job) =>
      vault.engine.submit({
        ...job,
        kind: 'drill',
        targetType: 'machine',
        targetId: machine.id,
        input: { ...settings, machineId: machine.id },
      }),
  );
}

/**
 * Starts a drill of a recovery plan: its groups in order with their actions,
 * every machine booted on the isolated test network. Refused, naming every
 * machine that is not ready and every script the plan names that cannot
 * run, when the plan cannot run through now; nothing is started then.
 */
export async function requestPlanDrill(
  vault: VaultContext,
  plan: RecoveryPlan,
  request: DrillRequest,
): Promise<DrillRun> {
  const [running] = await vault.store.drillRuns.list({
    target: { kind: 'plan', planId: plan.id },
    states: ['running'],
    limit: 1,
  });
  if (running) {
    throw new HavenError(
      'conflict',
      `plan '${plan.name}' is already in drill ${running.id.slice(0, 8)} (since ${running.startedAt}); wait for it to end or cancel its job`,
      { planId: plan.id, drillId: running.id, jobId: running.jobId },
    );
  }
  const problems = planScriptProblems(plan.groups, await vault.scripts.registry.known());
  const machines = await planMembers(vault, plan, await activePlanJobs(vault), problems, async (machine) => {
    const refusal = await machineDrillRefusal(vault, machine);
    if (refusal) throw refusal;
  });
  if (machines.length === 0 && problems.length === 0) problems.push('it has no machines');
  if (problems.length > 0) {
    throw new HavenError(
      'operation_not_allowed',
      `Plan '${plan.name}' cannot be drilled now: ${problems.join('; ')}. Nothing was started.`,
      { planId: plan.id, problems },
    );
  }
  return startDrill(
    vault,
    { kind: 'plan', planId: plan.id, name: plan.name },
    machines,
    request,
    (settings, job) =>
      vault.engine.submit({
        ...job,
        kind: PLAN_DRILL_JOB_KIND,
        targetType: 'plan',
        targetId: plan.id,
        input: {
          ...settings,
          planId: plan.id,
          planName: plan.name,
          groups: plan.groups,
          machineNames: Object.fromEntries(machines.map((m) => [m.id, m.name])),
        },
      }),
  );
}
