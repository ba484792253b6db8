export { drillAlerts, drillFailedAlertKey } from './drill-alerts.ts';
export {
  bootCheckResult,
  chooseDrillPoint,
  cleanUpDrill,
  drillCopyNames,
  drillJob,
} from './drill-job.ts';
export type { DrillJobInput } from './drill-job-input.ts';
export { targetProof } from './drill-proof.ts';
export { drillReport, drillReportHtml, drillReportMarkdown } from './drill-report.ts';
export {
  type DrillScheduleInput,
  drillCheckProblems,
  drillScheduleFrom,
  refuseProblems,
} from './drill-schedule-input.ts';
export { type MachineDrillRequest, requestMachineDrill } from './request-drill.ts';
