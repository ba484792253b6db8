export { drillAlerts, drillFailedAlertKey, drillOverdueAlertKey } from './drill-alerts.ts';
export { cancelDrill, cancelDrillsFor, refuseDuringDrill, runningDrillsOf } from './drill-conflicts.ts';
export {
  bootCheckResult,
  chooseDrillPoint,
  cleanUpDrill,
  drillCopyNames,
  drillJob,
} from './drill-job.ts';
export type { DrillJobInput } from './drill-job-input.ts';
export { machineProofs, targetProof } from './drill-proof.ts';
export { drillReport, drillReportHtml, drillReportMarkdown } from './drill-report.ts';
export {
  type DrillScheduleInput,
  drillCheckProblems,
  drillScheduleFrom,
  refuseProblems,
} from './drill-schedule-input.ts';
export {
  DEFAULT_MAX_AGE_WITHOUT_PASS_MS,
  DrillScheduler,
  type DrillSchedulerOptions,
} from './drill-scheduler.ts';
export { type MachineDrillRequest, requestMachineDrill } from './request-drill.ts';
