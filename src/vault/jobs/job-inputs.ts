import type { LifecycleOperation, Transition } from '../../domain/index.ts';
import type { Job } from '../../domain/model.ts';
import type { JobDefinition } from '../../job-engine/index.ts';
import type { DrillJobInput } from '../drills/drill-job-input.ts';
import type { PlanDrillJobInput } from '../drills/plan-drill-job-input.ts';
import type { OperationOptions } from '../lifecycle/operation-options.ts';
import type { PlanJobInput } from '../plans/plan-steps.ts';

/** A lifecycle job's input: its operation's options, the machine, and the transition the job makes. */
export type LifecycleJobInput<O extends LifecycleOperation = LifecycleOperation> = OperationOptions[O] & {
  machineId: string;
  transition: Transition;
};

/** Every kind of job the vault runs, and its input. */
export type VaultJobInputs = { [O in LifecycleOperation]: LifecycleJobInput<O> } & {
  'vault-backup': { file: string };
  'recovery-plan': PlanJobInput;
  drill: DrillJobInput;
  'plan-drill': PlanDrillJobInput;
};

export type VaultJobDefinition<K extends keyof VaultJobInputs> = JobDefinition<K, VaultJobInputs[K]>;

/** A stored job's input when the job is of `kind`, else null. */
export function vaultJobInput<K extends keyof VaultJobInputs>(job: Job, kind: K): VaultJobInputs[K] | null {
  // The vault's engine checked the input against its kind when the job was submitted.
  return job.kind === kind ? (job.input as VaultJobInputs[K]) : null;
}
