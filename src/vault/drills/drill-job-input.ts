import type { BootCheckSettings, DrillChecks, DrillPointChoice } from '../../domain/drill.ts';

/** A drill job's input: the drill's settings as they were when it started (a schedule edited later does not change it). */
export type DrillJobInput = {
  drillId: string;
  machineId: string;
  point: DrillPointChoice;
  testNetwork: string | null;
  checks: DrillChecks;
  boot: BootCheckSettings;
  timeLimitSeconds: number;
};
