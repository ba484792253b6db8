import { isTerminalJobState, JOB_STATES, planTransition } from '../../domain/index.ts';
import type { Job, Machine, RecoveryPlan } from '../../domain/model.ts';
import { type BusyMachine, planScriptProblems } from '../../domain/recovery-plan-validation.ts';
import { HavenError } from '../../errors/index.ts';
import { refuseDuringDrill } from '../drills/drill-conflicts.ts';
import { vaultJobInput } from '../jobs/job-inputs.ts';
import { operationCheck } from '../lifecycle/operation-checks.ts';
import { type OperationWithOptions, transitionOptions } from '../lifecycle/operation-options.ts';
import type { VaultContext } from '../vault-context.ts';
import { PLAN_JOB_KIND } from './plan-job.ts';
import { type PlanJobInput, type PlanOperation, runsActions } from './plan-steps.ts';

/** Plan jobs that have not ended, with the machines each one moves. */
export async function activePlanJobs(vault: VaultContext): Promise<Job[]> {
  const jobs = await Promise.all(
    JOB_STATES.filter((state) => !isTerminalJobState(state)).map((state) =>
      vault.store.jobs.list({ state, limit: 1000 }),
    ),
  );
  return jobs.flat().filter((job) => job.kind === PLAN_JOB_KIND);
}

export function busyMachines(jobs: readonly Job[]): BusyMachine[] {
  return jobs.flatMap((job) => {
    const input = vaultJobInput(job, PLAN_JOB_KIND);
    return (input?.groups ?? []).flatMap((group) =>
      group.machineIds.map((machineId) => ({ machineId, planName: input!.planName, jobId: job.id })),
    );
  });
}

/**
 * The plan's machines as they are now, adding to `problems` every one that
 * is gone, that another plan job (of `active`) is moving, or that `check`
 * refuses (its error's message): what every plan-wide request checks first.
 */
export async function planMembers(
  vault: VaultContext,
  plan: RecoveryPlan,
  active: readonly Job[],
  problems: string[],
  check: (machine: Machine) => Promise<void>,
): Promise<Machine[]> {
  const busy = new Map(busyMachines(active).map((b) => [b.machineId, b]));
  const machines: Machine[] = [];
  for (const id of plan.groups.flatMap((g) => g.machineIds)) {
    const machine = await vault.store.machines.get(id);
    if (!machine) {
      problems.push(`machine ${id} does not exist any more`);
      continue;
    }
    machines.push(machine);
    const other = busy.get(id);
    if (other) {
      problems.push(
        `machine '${machine.name}' is being moved by job ${other.jobId} of plan '${other.planName}'`,
      );
      continue;
    }
    try {
      await check(machine);
    } catch (error) {
      problems.push(error instanceof Error ? error.message : String(error));
    }
  }
  return machines;
}

/**
 * Starts a plan operation as one job, after checking what can be checked
 * now for every machine at once: each exists, no other plan job is moving
 * it, its state allows the operation, and the operation's own checks pass.
 * The refusal names every machine that is not ready.
 */
export async function requestPlanOperation(
  vault: VaultContext,
  request: { plan: RecoveryPlan; actor: string } & OperationWithOptions<PlanOperation>,
): Promise<Job> {
  const { plan, actor, ...requested } = request;
  const { operation } = requested;
  const active = await activePlanJobs(vault);
  const own = active.find((job) => job.targetId === plan.id);
  if (own) {
    throw new HavenError(
      'conflict',
      `Plan '${plan.name}' already has job ${own.id} (${vaultJobInput(own, PLAN_JOB_KIND)?.operation}, ${own.state}); ` +
        'wait for it to end, resume it or cancel it',
      { planId: plan.id, jobId: own.id },
    );
  }
  // Scripts are checked now, not when the job reaches them half-way through the plan.
  const problems: string[] = runsActions(requested)
    ? planScriptProblems(plan.groups, await vault.scripts.registry.known())
    : [];
  const machines = await planMembers(vault, plan, active, problems, async (machine) => {
    planTransition(machine, operation, transitionOptions(requested));
    await operationCheck(vault, requested)(machine);
    await refuseDuringDrill(vault, machine, operation);
  });
  if (problems.length > 0) {
    throw new HavenError(
      'operation_not_allowed',
      `Plan '${plan.name}' cannot run ${operation}: ${problems.join('; ')}. No machine was changed.`,
      { planId: plan.id, operation, problems },
    );
  }
  const input: PlanJobInput = {
    planId: plan.id,
    planName: plan.name,
    groups: plan.groups,
    machineNames: Object.fromEntries(machines.map((m) => [m.id, m.name])),
    ...requested,
  };
  return vault.engine.submit({
    kind: PLAN_JOB_KIND,
    targetType: 'plan',
    targetId: plan.id,
    input,
    createdBy: actor,
  });
}
