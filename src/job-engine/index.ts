export {
  defineJob,
  type JobDefinition,
  type JobInput,
  type JobInputMap,
  type JobOutcome,
  type SettleContext,
  type StepContext,
  type StepDefinition,
} from './job-definition.ts';
export { JobEngine, type JobEngineOptions, type SubmitRequest, toJobError } from './job-engine.ts';
