import type { RecoveryPlanGroup } from '../../domain/model.ts';
import type { DrillSettings } from './drill-job-input.ts';

/** A plan drill job's input: a snapshot of the plan (editing it does not change a running drill) and the drill's settings. */
export type PlanDrillJobInput = DrillSettings & {
  planId: string;
  planName: string;
  groups: RecoveryPlanGroup[];
  machineNames: Record<string, string>;
};
