import { type DrillRun, type DrillTarget, proofOf, type TargetProof } from '../../domain/drill.ts';
import type { VaultContext } from '../vault-context.ts';

/**
 * A machine's or plan's proof: its last proven point (a machine also by its
 * part in a plan drill) and its newest drill. Two indexed reads, asked per
 * object (not in the machine list, which stays one query for 1000 machines).
 */
export async function targetProof(vault: VaultContext, target: DrillTarget): Promise<TargetProof> {
  const { drillRuns } = vault.store;
  const [proven, latest] =
    target.kind === 'machine'
      ? await Promise.all([
          drillRuns.lastProven(target.machineId),
          drillRuns.list({ machineId: target.machineId, limit: 1 }),
        ])
      : await Promise.all([drillRuns.lastPassed(target), drillRuns.list({ target, limit: 1 })]);
  return proofFrom(target, proven, latest[0]);
}

/**
 * Every drilled machine's and plan's proof in one answer, for lists and the
 * dashboard (one never drilled is left out: it is not proven). Machines in
 * two queries however many there are; plans, which are few, each by its own
 * two indexed reads.
 */
export async function allProofs(vault: VaultContext): Promise<TargetProof[]> {
  const [machines, plans] = await Promise.all([
    vault.store.drillRuns.machineProofRuns(),
    vault.store.plans.list(),
  ]);
  const planProofs = await Promise.all(
    plans.map((plan) => targetProof(vault, { kind: 'plan', planId: plan.id })),
  );
  return [
    ...machines.map(({ machineId, lastProven, newest }) =>
      proofFrom({ kind: 'machine', machineId }, lastProven, newest),
    ),
    ...planProofs.filter((proof) => proof.lastDrill !== null),
  ];
}

function proofFrom(
  target: DrillTarget,
  proven: DrillRun | undefined,
  last: DrillRun | undefined,
): TargetProof {
  return {
    target,
    lastProven:
      proven === undefined ? null : proofOf(proven, target.kind === 'machine' ? target.machineId : undefined),
    lastDrill: last ? { id: last.id, state: last.state, reason: last.reason, endedAt: last.endedAt } : null,
  };
}
