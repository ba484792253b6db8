import { type DrillTarget, proofOf, type TargetProof } from '../../domain/drill.ts';
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
  const last = latest[0];
  return {
    target,
    lastProven:
      proven === undefined ? null : proofOf(proven, target.kind === 'machine' ? target.machineId : undefined),
    lastDrill: last ? { id: last.id, state: last.state, reason: last.reason, endedAt: last.endedAt } : null,
  };
}
