export { PLAN_JOB_KIND, type PlanMachineRecord, recoveryPlanJob } from './plan-job.ts';
export {
  type PlanOperationAvailability,
  type PlanOperationBlocker,
  planOperationAvailability,
} from './plan-operation-availability.ts';
export { planRtoEstimate } from './plan-rto.ts';
export {
  ACTION_OPERATIONS,
  actionStepName,
  type Direction,
  directionOf,
  PLAN_OPERATIONS,
  type PlanJobInput,
  type PlanOperation,
  type PlanStep,
  planSteps,
  runsActions,
} from './plan-steps.ts';
export { activePlanJobs, busyMachines, requestPlanOperation } from './request-plan-operation.ts';
