import type { RecoveryPlan } from '../../domain/model.ts';
import { estimateRto, type RtoEstimate } from '../../domain/recovery-plan-rto.ts';
import type { VaultContext } from '../vault-context.ts';
import { PLAN_JOB_KIND } from './plan-job.ts';
import { actionStepName } from './plan-steps.ts';

/** Jobs whose duration measures how long a machine takes to come up at the other site. */
const MEASURED = new Set(['test-failover', 'failover', 'planned-failover']);

const seconds = (from: string | null, to: string | null) =>
  from && to ? (Date.parse(to) - Date.parse(from)) / 1000 : undefined;

/**
 * The plan's RTO estimate from what was measured: per machine, the newer of
 * its last passing drill (how long its point took to come up, checks done)
 * and its most recent successful (test) failover; and the plan's most recent
 * run of each script.
 */
export async function planRtoEstimate(vault: VaultContext, plan: RecoveryPlan): Promise<RtoEstimate> {
  const machineSeconds = new Map<string, number>();
  for (const machineId of plan.groups.flatMap((g) => g.machineIds)) {
    const jobs = await vault.store.jobs.list({ targetId: machineId, state: 'succeeded', limit: 200 });
    const latest = jobs.find((job) => MEASURED.has(job.kind));
    // Until the machine was up (its first console output) when that was measured, else until the job ended.
    const up = latest?.output.machineUp as { at: string } | undefined;
    const took = latest && seconds(latest.startedAt, up?.at ?? latest.finishedAt);
    const proven = await vault.store.drillRuns.lastProven(machineId);
    const drilled = proven?.machines.find((m) => m.machineId === machineId)?.rtoSeconds ?? null;
    const drillIsNewer = proven?.endedAt && (!latest?.finishedAt || proven.endedAt > latest.finishedAt);
    if (drilled !== null && (drillIsNewer || took === undefined)) machineSeconds.set(machineId, drilled);
    else if (took !== undefined) machineSeconds.set(machineId, took);
  }
  const actionSeconds = new Map<string, number>();
  const runs = (await vault.store.jobs.list({ targetId: plan.id, limit: 50 })).filter(
    (job) => job.kind === PLAN_JOB_KIND,
  );
  // Newest first: the first run that has a script step's duration wins.
  for (const run of runs) {
    for (const step of run.steps) {
      if (step.state !== 'succeeded' || actionSeconds.has(step.name)) continue;
      const output = (run.output.actions as Record<string, { durationMs?: number }> | undefined)?.[step.name];
      if (output?.durationMs !== undefined) actionSeconds.set(step.name, output.durationMs / 1000);
    }
  }
  const drilled = await vault.store.drillRuns.lastPassed({ kind: 'plan', planId: plan.id });
  const planDrill =
    drilled?.rtoSeconds != null && drilled.endedAt !== null
      ? { drillId: drilled.id, seconds: drilled.rtoSeconds, provenAt: drilled.endedAt }
      : null;
  return estimateRto(plan.groups, { machineSeconds, actionSeconds, planDrill }, actionStepName);
}
