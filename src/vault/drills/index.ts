export { drillAlerts, drillFailedAlertKey, drillOverdueAlertKey } from './drill-alerts.ts';
export { cancelDrill, cancelDrillsFor, refuseDuringDrill, runningDrillsOf } from './drill-conflicts.ts';
export { drillJob } from './drill-job.ts';
export type { DrillJobInput, DrillSettings } from './drill-job-input.ts';
export {
  bootCheckResult,
  chooseDrillPoint,
  chooseDrillPoints,
  cleanUpDrill,
  drillCopyNames,
} from './drill-machine.ts';
export { allProofs, targetProof } from './drill-proof.ts';
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
export { planDrillJob } from './plan-drill-job.ts';
export type { PlanDrillJobInput } from './plan-drill-job-input.ts';
export {
  manualActionCheck,
  PLAN_DRILL_JOB_KIND,
  type PlanDrillStep,
  planDrillSteps,
  planOrderCheck,
} from './plan-drill-steps.ts';
export { type DrillRequest, requestMachineDrill, requestPlanDrill } from './request-drill.ts';
