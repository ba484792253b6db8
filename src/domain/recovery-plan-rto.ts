/**
 * A plan's RTO estimate from what was measured before: groups run one after
 * another and the machines of a group together, so a group takes as long as
 * its slowest machine plus its script actions, and the plan the sum of its
 * groups. Manual actions are left out: they take as long as the operator.
 */
import type { RecoveryPlanGroup } from './model.ts';

export interface RtoHistory {
  /** Seconds the machine's most recent successful (test) failover job took. */
  machineSeconds: ReadonlyMap<string, number>;
  /** Seconds a script action took in the plan's most recent run, by its step name. */
  actionSeconds: ReadonlyMap<string, number>;
  /** The plan's last passing drill, which measured the whole plan (null: none yet). */
  planDrill?: MeasuredPlanRto | null;
}

/** The RTO of the whole plan as a drill measured it: its order and actions, every machine up. */
export interface MeasuredPlanRto {
  drillId: string;
  seconds: number;
  /** When the drill ended. */
  provenAt: string;
}

export interface RtoEstimate {
  /** null when none of the plan's machines has a measured failover yet. */
  seconds: number | null;
  /** Machines with no measured failover: the estimate leaves them out. */
  machinesWithoutHistory: string[];
  groups: Array<{ name: string; seconds: number }>;
  /** Measured, not estimated: the plan's last passing drill (null: none yet). */
  measured: MeasuredPlanRto | null;
}

export function estimateRto(
  groups: readonly RecoveryPlanGroup[],
  history: RtoHistory,
  actionStepName: (groupIndex: number, side: 'before' | 'after', actionIndex: number) => string,
): RtoEstimate {
  const missing: string[] = [];
  let measured = 0;
  const perGroup = groups.map((group, g) => {
    let slowest = 0;
    for (const id of group.machineIds) {
      const seconds = history.machineSeconds.get(id);
      if (seconds === undefined) missing.push(id);
      else {
        measured++;
        slowest = Math.max(slowest, seconds);
      }
    }
    let scripts = 0;
    for (const side of ['before', 'after'] as const) {
      group[side].forEach((action, a) => {
        if (action.kind === 'script') scripts += history.actionSeconds.get(actionStepName(g, side, a)) ?? 0;
      });
    }
    return { name: group.name, seconds: round(slowest + scripts) };
  });
  const total = perGroup.reduce((sum, group) => sum + group.seconds, 0);
  return {
    seconds: measured === 0 ? null : round(total),
    machinesWithoutHistory: missing,
    groups: perGroup,
    measured: history.planDrill ?? null,
  };
}

function round(seconds: number): number {
  return Math.round(seconds * 10) / 10;
}
