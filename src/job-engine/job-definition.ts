import type { TerminalJobState } from '../domain/job-states.ts';
import type { Job, JobError } from '../domain/model.ts';

/** A job's input: persisted with the job (as JSON), so an object of plain data. */
export type JobInput = Job['input'];

/**
 * Each job kind and the type of its input (graphile-worker's task map):
 * submitting a job and running its steps are checked against it. Declared
 * as a type alias (an interface has no index signature to match this).
 */
export type JobInputMap = Record<string, JobInput>;

/** What a running step can see and do. */
export interface StepContext<I extends object = JobInput> {
  readonly job: Job;
  readonly input: I;
  /** Aborted when the job is cancelled (only possible before its point of no return). */
  readonly signal: AbortSignal;
  /** Reports this step's progress (0..100) and an optional status line; persisted, throttled. */
  progress(percent: number, message?: string): void;
  /** Merges results into this step's output and the job's (shown under the step, kept after it ends). */
  output(patch: Record<string, unknown>): Promise<void>;
  /** True when this step had already started before a vault restart and runs again. */
  readonly isResumed: boolean;
  /**
   * True when the job was created before this vault process started: it
   * survived a vault restart (or another vault's lease ran out), so the
   * hosts it talks to may not have reconnected yet.
   */
  readonly carriedOver: boolean;
  /**
   * Pauses the job in state 'waiting' with these instructions for the
   * operator: the job releases its worker and the step stays unfinished until
   * `JobEngine.resume()`, which marks it done and queues the job again (a
   * vault restart keeps it waiting). Never returns; a step calls it last.
   */
  waitForOperator(instructions: string): Promise<never>;
}

export interface StepDefinition<I extends object = JobInput> {
  /** Stable id of the step within its job kind: persisted, used to resume. */
  name: string;
  /** What the operator sees. */
  title: string;
  /**
   * Safe to run again from its start when the vault died while it was
   * running. Steps that are not (e.g. "power on the recovery machine" without
   * an idempotency check) make a resumed job fail with a clear reason instead.
   */
  retrySafe: boolean;
  /**
   * Once this step has started the job refuses cancel: stopping half-way
   * would leave the machine worse off than finishing (SPEC §2: a cancelled
   * failover leaves the machine unreplicated).
   */
  pointOfNoReturn?: boolean;
  /** Relative share of the job's overall progress; default 1. */
  weight?: number;
  run(ctx: StepContext<I>): Promise<void>;
}

export type JobOutcome = TerminalJobState;

export interface SettleContext<I extends object = JobInput> {
  readonly job: Job;
  readonly input: I;
  readonly outcome: JobOutcome;
  readonly error: JobError | null;
}

/*
 * Its methods take the input as a method parameter (checked bivariantly), so
 * a definition of one kind is also a `JobDefinition` of any input: how the
 * engine holds them all and hands each the input persisted with its job.
 */
export interface JobDefinition<K extends string = string, I extends object = JobInput> {
  kind: K;
  /**
   * The steps for this input. Must be deterministic: the list is persisted
   * when the job is created and matched by name when a job is resumed.
   */
  steps(input: I): StepDefinition<I>[];
  /**
   * Runs once when the job ends, whatever the outcome (e.g. move the machine
   * out of its in-progress state). Must be safe to repeat: a crash between
   * settle and the final write runs it again.
   */
  settle?(ctx: SettleContext<I>): Promise<void>;
}

export function defineJob<K extends string, I extends object = JobInput>(
  definition: JobDefinition<K, I>,
): JobDefinition<K, I> {
  return definition;
}
