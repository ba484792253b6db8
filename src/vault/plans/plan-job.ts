import { randomUUID } from 'node:crypto';
import { isoNow } from '../../clock/index.ts';
import { isTerminalJobState } from '../../domain/job-states.ts';
import {
  type Job,
  type ManualPlanAction,
  type RecoveryPlanAction,
  type RecoveryPlanGroup,
  type ScriptRunState,
  startedScriptRun,
} from '../../domain/model.ts';
import { DEFAULT_SCRIPT_TIMEOUT_SECONDS } from '../../domain/recovery-plan-validation.ts';
import { HavenError } from '../../errors/index.ts';
import { defineJob, type StepContext } from '../../job-engine/index.ts';
import { runScript, scriptUser } from '../../scripts/index.ts';
import { jobTitle } from '../../text/job-title.ts';
import type { VaultJobDefinition } from '../jobs/job-inputs.ts';
import { operationCheck } from '../lifecycle/operation-checks.ts';
import { requestOperation } from '../lifecycle/request-operation.ts';
import type { VaultContext } from '../vault-context.ts';
import {
  type Direction,
  directionOf,
  type PlanJobInput,
  type PlanOperation,
  type PlanStep,
  planOperation,
  planSteps,
} from './plan-steps.ts';

export const PLAN_JOB_KIND = 'recovery-plan';

/** What the plan job records per machine in its output. */
export interface PlanMachineRecord {
  name: string;
  group: string;
  jobId: string | null;
  state: Job['state'] | null;
  error: string | null;
}

/**
 * One plan operation over all its machines as one job. Groups run strictly
 * in order; the first machine step of a group requests the operation for
 * every machine of the group (through the same path as the API), so they run
 * together, and each machine step waits for its own machine's job. A group's
 * after actions, and so the next group, start only when all its machines'
 * jobs have succeeded; a machine whose job fails fails the plan, naming it.
 */
export function recoveryPlanJob(vault: () => VaultContext): VaultJobDefinition<typeof PLAN_JOB_KIND> {
  return defineJob({
    kind: PLAN_JOB_KIND,
    steps: (input) => {
      return planSteps(input).map((step) => ({
        name: step.name,
        title: step.title,
        // A script interrupted by a vault restart may have done half its work: do not run it twice unasked.
        retrySafe: step.kind !== 'action' || step.action.kind === 'manual',
        weight: step.kind === 'machine' ? 4 : 1,
        run: (ctx) =>
          step.kind === 'machine'
            ? runMachineStep(vault(), ctx, input, step)
            : runActionStep(vault(), ctx, input, step),
      }));
    },
  });
}

async function machineRecords(
  vault: VaultContext,
  jobId: string,
): Promise<Record<string, PlanMachineRecord>> {
  const job = await vault.store.jobs.get(jobId);
  return { ...((job?.output.machines as Record<string, PlanMachineRecord> | undefined) ?? {}) };
}

async function runMachineStep(
  vault: VaultContext,
  ctx: StepContext,
  input: PlanJobInput,
  step: Extract<PlanStep, { kind: 'machine' }>,
): Promise<void> {
  const group = input.groups[step.group]!;
  const records = await machineRecords(vault, ctx.job.id);
  // Start the whole group at its first machine step (the others find their jobs recorded).
  let started = false;
  for (const machineId of group.machineIds) {
    if (records[machineId]) continue;
    records[machineId] = await startMachine(vault, ctx, input, group.name, machineId);
    started = true;
  }
  if (started) await ctx.output({ machines: records });

  const name = input.machineNames[step.machineId] ?? step.machineId;
  const record = records[step.machineId]!;
  if (!record.jobId) {
    throw new HavenError(
      'operation_not_allowed',
      `Machine '${name}' (group '${group.name}') could not start ${input.operation}: ${record.error}`,
      { machineId: step.machineId, machineName: name, group: group.name },
    );
  }
  const job = await waitForJob(vault, record.jobId, ctx);
  const latest = await machineRecords(vault, ctx.job.id);
  latest[step.machineId] = { ...record, state: job.state, error: job.error?.message ?? null };
  await ctx.output({ machines: latest });
  if (job.state !== 'succeeded') {
    throw new HavenError(
      'conflict',
      `Machine '${name}' (group '${group.name}'): its ${input.operation} job ${job.id} ${job.state}` +
        `${job.error ? `: ${job.error.message}` : ''}. Groups after '${group.name}' were not started.`,
      { machineId: step.machineId, machineName: name, group: group.name, jobId: job.id },
    );
  }
}

async function startMachine(
  vault: VaultContext,
  ctx: StepContext,
  input: PlanJobInput,
  group: string,
  machineId: string,
): Promise<PlanMachineRecord> {
  const name = input.machineNames[machineId] ?? machineId;
  const base = { name, group, state: null };
  const machine = await vault.store.machines.get(machineId);
  // After a vault restart between requesting and recording: adopt the job this plan started.
  if (ctx.isResumed && machine?.currentJobId) {
    const current = await vault.store.jobs.get(machine.currentJobId);
    if (current && current.kind === input.operation && current.createdAt >= (ctx.job.startedAt ?? '')) {
      return { ...base, jobId: current.id, error: null };
    }
  }
  try {
    const requested = planOperation(input);
    const job = await requestOperation(vault, {
      ...requested,
      machineId,
      actor: `${ctx.job.createdBy} (plan '${input.planName}')`,
      check: operationCheck(vault, requested),
    });
    return { ...base, jobId: job.id, error: null };
  } catch (error) {
    return { ...base, jobId: null, error: error instanceof Error ? error.message : String(error) };
  }
}

/** Waits for a machine's job to end, mirroring its progress on the plan step. */
async function waitForJob(vault: VaultContext, jobId: string, ctx: StepContext): Promise<Job> {
  for (;;) {
    ctx.signal.throwIfAborted();
    const job = await vault.store.jobs.get(jobId);
    if (!job) throw new HavenError('not_found', `Job '${jobId}' does not exist any more`, { jobId });
    const machine = job.targetId ? await vault.store.machines.get(job.targetId) : undefined;
    const what = `${jobTitle(job)}${machine ? ` of ${machine.name}` : ''} (job ${job.id.slice(0, 8)})`;
    if (isTerminalJobState(job.state)) {
      // The step's last line says how the machine's job ended, not what it was doing before.
      ctx.progress(job.progress, `${what}: ${job.state}`);
      return job;
    }
    const running = job.steps.find((s) => s.state === 'running');
    ctx.progress(job.progress, `${what}: ${running ? running.title : job.state}`);
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        vault.engine.off('change', onChange);
        ctx.signal.removeEventListener('abort', done);
        resolve();
      };
      const onChange = (id: string) => {
        if (id === jobId) done();
      };
      // Another vault process may run the machine's job: poll as well as listen.
      const timer = setTimeout(done, 500);
      vault.engine.on('change', onChange);
      ctx.signal.addEventListener('abort', done, { once: true });
    });
  }
}

async function runActionStep(
  vault: VaultContext,
  ctx: StepContext,
  input: PlanJobInput,
  step: Extract<PlanStep, { kind: 'action' }>,
): Promise<void> {
  const group = input.groups[step.group]!;
  const { action } = step;
  if (action.kind === 'manual') {
    await ctx.waitForOperator(
      `Manual action '${action.name}' (group '${group.name}', ${step.side} its machines): ${action.text}`,
    );
    return;
  }
  await runScriptAction(vault, ctx, {
    planId: input.planId,
    planName: input.planName,
    group,
    machineNames: input.machineNames,
    stepName: step.name,
    action,
    operation: input.operation,
    direction: directionOf(input.operation),
  });
}

/** A plan's script action as one of its jobs runs it: the plan, the group and the step it belongs to. */
export interface ScriptActionRun {
  planId: string;
  planName: string;
  group: RecoveryPlanGroup;
  machineNames: Record<string, string>;
  stepName: string;
  action: Exclude<RecoveryPlanAction, ManualPlanAction>;
  /** What the script sees in HAVEN_OPERATION: the plan's operation, or 'drill'. */
  operation: PlanOperation | 'drill';
  direction: Direction;
}

/**
 * Runs a plan's script action from the admin's registry as the scripts'
 * user, records the run (its output kept for operators and admins) and the
 * outcome in the job's output; throws, naming the action and its run, when
 * it fails or times out. An inline command is never run.
 */
export async function runScriptAction(
  vault: VaultContext,
  ctx: StepContext<object>,
  request: ScriptActionRun,
): Promise<void> {
  const { group, action } = request;
  const label = `Script action '${action.name}' (group '${group.name}')`;
  if (action.kind === 'inline-script') {
    throw new HavenError(
      'conflict',
      `${label} holds an inline command, which is never run: an admin registers it as a script in ` +
        `${vault.scripts.registry.dir} and the plan names it with 'script: NAME'`,
      { action: action.name, group: group.name },
    );
  }
  const script = await vault.scripts.registry.load(action.script);
  const user = await scriptUser(vault.scripts.user);
  const timeoutSeconds = action.timeoutSeconds ?? DEFAULT_SCRIPT_TIMEOUT_SECONDS;
  ctx.progress(0, `running script '${script.name}' as ${user.name} (timeout ${timeoutSeconds} s)`);
  const runId = randomUUID();
  await vault.store.scriptRuns.create(
    startedScriptRun({
      id: runId,
      jobId: ctx.job.id,
      stepName: request.stepName,
      planId: request.planId,
      planName: request.planName,
      action: action.name,
      script: script.name,
      sha256: script.sha256,
      startedBy: ctx.job.createdBy,
      runAs: user.name,
      runAsNote: user.note,
      startedAt: isoNow(vault.clock),
    }),
  );
  const run = await runScript({
    script,
    user,
    timeoutMs: timeoutSeconds * 1000,
    signal: ctx.signal,
    env: {
      HAVEN_PLAN: request.planName,
      HAVEN_PLAN_ID: request.planId,
      HAVEN_GROUP: group.name,
      HAVEN_OPERATION: request.operation,
      HAVEN_MACHINES: group.machineIds.map((id) => request.machineNames[id] ?? id).join(' '),
      HAVEN_MACHINE_IDS: group.machineIds.join(' '),
      HAVEN_DIRECTION: request.direction,
      HAVEN_ACTION: action.name,
      HAVEN_SCRIPT: script.name,
      HAVEN_JOB_ID: ctx.job.id,
      HAVEN_RUN_ID: runId,
    },
  });
  const state: ScriptRunState = run.timedOut
    ? 'timed-out'
    : run.cancelled || run.signal
      ? 'killed'
      : run.exitCode === 0
        ? 'succeeded'
        : 'failed';
  await vault.store.scriptRuns.finish(runId, {
    finishedAt: isoNow(vault.clock),
    state,
    exitCode: run.exitCode,
    signal: run.signal,
    output: run.output,
    outputBytes: run.outputBytes,
    outputTruncated: run.outputTruncated,
  });
  // The job (which viewers see) says how it ended; the output stays in the run record.
  const current = (await vault.store.jobs.get(ctx.job.id))?.output.actions as
    | Record<string, unknown>
    | undefined;
  await ctx.output({
    actions: {
      ...current,
      [request.stepName]: {
        name: action.name,
        group: group.name,
        script: script.name,
        runId,
        runAs: user.name,
        state,
        exitCode: run.exitCode,
        signal: run.signal,
        durationMs: run.durationMs,
      },
    },
  });
  ctx.signal.throwIfAborted();
  const where = `(run ${runId}; 'haven scripts output ${runId}' shows its output)`;
  if (state === 'timed-out') {
    throw new HavenError(
      'conflict',
      `${label} did not finish within ${timeoutSeconds} s and was killed ${where}`,
      { action: action.name, group: group.name, runId },
    );
  }
  if (state !== 'succeeded') {
    throw new HavenError(
      'conflict',
      `${label} failed with ${run.signal ? `signal ${run.signal}` : `exit code ${run.exitCode}`} ${where}`,
      { action: action.name, group: group.name, exitCode: run.exitCode, runId },
    );
  }
}
