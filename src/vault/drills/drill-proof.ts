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
 * Every drilled machine's proof in one answer, for lists of all machines (a
 * machine no drill ran is left out: it is not proven).
 */
export async function machineProofs(vault: VaultContext): Promise<TargetProof[]> {
  return (await vault.store.drillRuns.machineProofRuns()).map(({ machineId, lastProven, newest }) =>
    proofFrom({ kind: 'machine', machineId }, lastProven, newest),
  );
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
