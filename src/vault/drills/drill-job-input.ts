import type { BootCheckSettings, DrillChecks, DrillPointChoice } from '../../domain/drill.ts';

/** How a drill runs, for each of its machines alike: as it was when it started (a schedule edited later does not change it). */
export type DrillSettings = {
  drillId: string;
  point: DrillPointChoice;
  testNetwork: string | null;
  checks: DrillChecks;
  boot: BootCheckSettings;
  timeLimitSeconds: number;
};

/** A drill job's input: one machine, with the drill's settings. */
export type DrillJobInput = DrillSettings & { machineId: string };
