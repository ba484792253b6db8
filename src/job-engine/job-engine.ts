import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { type Clock, isoNow, systemClock } from '../clock/index.ts';
import { isTerminalJobState } from '../domain/job-states.ts';
import { type Job, type JobError, type JobStep, pendingStep } from '../domain/model.ts';
import { HavenError } from '../errors/index.ts';
import type { Store } from '../store/index.ts';
import type { JobDefinition, JobInputMap, JobOutcome, StepDefinition } from './job-definition.ts';

export interface JobEngineOptions {
  store: Store;
  /** Each kind's definition, its input typed where it is defined (`defineJob`); tests may add kinds not in `M`. */
  definitions: JobDefinition[];
  clock?: Clock;
  /** Identifies this vault process in job leases. */
  workerId?: string;
  /** How long a claim lasts without renewal; a dead vault's jobs are taken over after it. */
  leaseMs?: number;
  /** How often idle workers look for work (submit() in this process wakes them at once). */
  pollMs?: number;
  /** Jobs run at the same time by this process. */
  concurrency?: number;
  /** Minimum interval between persisted progress updates of one step. */
  progressIntervalMs?: number;
}

export type SubmitRequest<
  M extends JobInputMap = JobInputMap,
  K extends keyof M & string = keyof M & string,
> = {
  kind: K;
  targetType: Job['targetType'];
  targetId: string | null;
  createdBy: string;
  /** Callers that must reference the job before it exists (e.g. in a machine's state) pass its id. */
  id?: string;
  // A kind whose input may be empty may leave it out.
} & (Record<string, never> extends M[K] ? { input?: M[K] } : { input: M[K] });

/**
 * The durable job engine. Jobs and their steps live in the store; this class
 * claims runnable jobs with a lease, runs their steps in order, persists
 * progress, and on restart resumes each job at its first unfinished step — or
 * fails it with a reason when that step was interrupted and is not safe to
 * repeat. Nothing is kept only in memory except the abort signals of the jobs
 * this process is running. `M` maps each job kind to its input: `submit`
 * is checked against it.
 */
export class JobEngine<M extends JobInputMap = JobInputMap> extends EventEmitter<{
  change: [jobId: string];
}> {
  readonly workerId: string;
  readonly #store: Store;
  readonly #definitions: Map<string, JobDefinition>;
  readonly #clock: Clock;
  readonly #leaseMs: number;
  readonly #pollMs: number;
  readonly #concurrency: number;
  readonly #progressIntervalMs: number;
  readonly #running = new Map<string, { abort: AbortController; done: Promise<void> }>();
  #timer: NodeJS.Timeout | null = null;
  #started = false;
  /** When this engine first started: jobs created before it are carried over from an earlier process. */
  #startedAt = Number.NEGATIVE_INFINITY;
  #polling = false;

  constructor(options: JobEngineOptions) {
    super();
    this.#store = options.store;
    this.#definitions = new Map(options.definitions.map((d) => [d.kind, d]));
    this.#clock = options.clock ?? systemClock;
    this.workerId = options.workerId ?? `vault-${randomUUID()}`;
    this.#leaseMs = options.leaseMs ?? 15_000;
    this.#pollMs = options.pollMs ?? 1_000;
    this.#concurrency = options.concurrency ?? 4;
    this.#progressIntervalMs = options.progressIntervalMs ?? 250;
  }

  /** Jobs this process runs at the same time. */
  get concurrency(): number {
    return this.#concurrency;
  }

  has(kind: string): boolean {
    return this.#definitions.has(kind);
  }

  definition(kind: string): JobDefinition {
    const definition = this.#definitions.get(kind);
    if (!definition) throw new HavenError('bad_request', `Unknown job kind '${kind}'`, { kind });
    return definition;
  }

  /** Persists a new job (queued) with its steps; a worker picks it up. */
  async submit<K extends keyof M & string>(request: SubmitRequest<M, K>): Promise<Job> {
    const definition = this.definition(request.kind);
    const input = request.input ?? {};
    const now = isoNow(this.#clock);
    const job: Job = {
      id: request.id ?? randomUUID(),
      kind: request.kind,
      targetType: request.targetType,
      targetId: request.targetId,
      state: 'queued',
      progress: 0,
      input,
      output: {},
      createdBy: request.createdBy,
      createdAt: now,
      startedAt: null,
      finishedAt: null,
      error: null,
      cancelRequested: false,
      steps: definition.steps(input).map((step, index) => pendingStep(index, step.name, step.title)),
    };
    await this.#store.jobs.create(job);
    this.#changed(job.id);
    if (this.#started) queueMicrotask(() => void this.#poll());
    return job;
  }

  /**
   * Cancels a job if that is safe. Queued jobs and jobs before their point of
   * no return stop at the next step boundary (the running step sees its
   * signal aborted). Past the point of no return the request is refused.
   */
  async cancel(jobId: string): Promise<Job> {
    const job = await this.#store.jobs.get(jobId);
    if (!job) throw new HavenError('not_found', `Job '${jobId}' does not exist`, { kind: 'job', id: jobId });
    if (isTerminalJobState(job.state)) {
      throw new HavenError(
        'conflict',
        `Job '${jobId}' has already ${job.state}; there is nothing to cancel`,
        {
          jobId,
          state: job.state,
        },
      );
    }
    const passed = this.#pointOfNoReturnPassed(job);
    if (passed) {
      throw new HavenError(
        'cancel_refused',
        `Job '${jobId}' (${job.kind}) cannot be cancelled: step '${passed.title}' has started and is its point of no return. ` +
          'Stopping now would leave the machine neither running at the recovery site nor replicated. ' +
          'Let the job finish, then change the recovery point or fail back.',
        { jobId, kind: job.kind, step: passed.name },
      );
    }
    if (job.state === 'waiting') {
      // No worker holds a waiting job: end it here (its settle runs as for any other end).
      await this.#store.jobs.update(jobId, { cancelRequested: true });
      for (const step of job.steps) {
        if (step.state === 'running')
          await this.#store.jobs.updateStep(jobId, step.index, {
            state: 'cancelled',
            finishedAt: isoNow(this.#clock),
          });
      }
      await this.#finish(job, 'cancelled', null);
      return (await this.#store.jobs.get(jobId))!;
    }
    await this.#store.jobs.update(jobId, { cancelRequested: true });
    this.#running.get(jobId)?.abort.abort(new HavenError('conflict', 'The job was cancelled'));
    this.#changed(jobId);
    if (this.#started) queueMicrotask(() => void this.#poll());
    return (await this.#store.jobs.get(jobId))!;
  }

  /**
   * Resumes a job waiting for an operator (a step called `waitForOperator`):
   * the waiting step is done, and the job is queued to go on with the next.
   */
  async resume(jobId: string, actor: string): Promise<Job> {
    const job = await this.#store.jobs.get(jobId);
    if (!job) throw new HavenError('not_found', `Job '${jobId}' does not exist`, { kind: 'job', id: jobId });
    if (job.state !== 'waiting') {
      throw new HavenError(
        'conflict',
        `Job '${jobId}' (${job.kind}) is ${job.state}: only a job waiting for an operator can be resumed`,
        { jobId, state: job.state },
      );
    }
    const now = isoNow(this.#clock);
    for (const step of job.steps) {
      if (step.state !== 'running') continue;
      await this.#store.jobs.updateStep(jobId, step.index, {
        state: 'succeeded',
        progress: 100,
        finishedAt: now,
        message: `${step.message ?? ''} (resumed by ${actor} at ${now})`.trim(),
      });
    }
    await this.#store.jobs.update(jobId, { state: 'queued' });
    this.#changed(jobId);
    if (this.#started) queueMicrotask(() => void this.#poll());
    return (await this.#store.jobs.get(jobId))!;
  }

  /** Whether cancel would be accepted now, and why not. */
  cancellable(job: Job): { cancellable: boolean; reason: string | null } {
    if (isTerminalJobState(job.state)) {
      return { cancellable: false, reason: `the job has ${job.state}` };
    }
    const passed = this.#pointOfNoReturnPassed(job);
    return passed
      ? { cancellable: false, reason: `step '${passed.title}' is past the point of no return` }
      : { cancellable: true, reason: null };
  }

  /**
   * Starts claiming jobs. `exclusive` says this engine is the only one on its
   * database (a SQLite vault): jobs still marked running were left by this
   * vault's previous process, so they are taken over now rather than when
   * their lease would have run out.
   */
  async start(options: { exclusive?: boolean } = {}): Promise<void> {
    if (this.#started) return;
    if (options.exclusive) await this.#store.jobs.expireLeases();
    if (this.#startedAt === Number.NEGATIVE_INFINITY) this.#startedAt = this.#clock.now().getTime();
    this.#started = true;
    this.#timer = setInterval(() => void this.#poll(), this.#pollMs);
    void this.#poll();
  }

  /** Stops claiming new jobs and waits for the ones running here to reach an end. */
  async stop(): Promise<void> {
    this.#started = false;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await Promise.allSettled([...this.#running.values()].map((r) => r.done));
  }

  /** Claims and runs at most one job to its end; for tests and tools. */
  async runOnce(): Promise<boolean> {
    const job = await this.#claim();
    if (!job) return false;
    await this.#track(job);
    return true;
  }

  /** Resolves when no job runs in this process (tests). */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running.values()].map((r) => r.done));
  }

  async #poll(): Promise<void> {
    if (this.#polling || !this.#started) return;
    this.#polling = true;
    try {
      while (this.#started && this.#running.size < this.#concurrency) {
        const job = await this.#claim();
        if (!job) break;
        void this.#track(job);
      }
    } catch (error) {
      // A failing database must not kill the process; the next poll retries.
      console.error('haven: job poll failed:', error);
    } finally {
      this.#polling = false;
    }
  }

  #claim(): Promise<Job | undefined> {
    const now = this.#clock.now();
    return this.#store.jobs.claim(this.workerId, now.toISOString(), this.#leaseUntil());
  }

  #leaseUntil(): string {
    return new Date(this.#clock.now().getTime() + this.#leaseMs).toISOString();
  }

  #track(job: Job): Promise<void> {
    const abort = new AbortController();
    const done = this.#run(job, abort).finally(() => {
      this.#running.delete(job.id);
      if (this.#started) queueMicrotask(() => void this.#poll());
    });
    this.#running.set(job.id, { abort, done });
    return done;
  }

  async #run(claimed: Job, abort: AbortController): Promise<void> {
    const renew = setInterval(
      () => void this.#renew(claimed.id, abort),
      Math.max(50, Math.floor(this.#leaseMs / 3)),
    );
    try {
      await this.#runSteps(claimed, abort);
    } catch (error) {
      if (abort.signal.aborted && abort.signal.reason instanceof LeaseLost) return;
      // Only a store failure gets here; the job stays claimed and is retried when the lease runs out.
      console.error(`haven: job ${claimed.id} interrupted:`, error);
    } finally {
      clearInterval(renew);
      // Only a finished job gives its lease up; an interrupted one keeps it until it expires and is retried.
      const state = (await this.#store.jobs.get(claimed.id).catch(() => undefined))?.state;
      if (state !== undefined && (isTerminalJobState(state) || state === 'waiting')) {
        await this.#store.jobs.release(claimed.id, this.workerId).catch(() => {});
      }
    }
  }

  async #renew(jobId: string, abort: AbortController): Promise<void> {
    try {
      const held = await this.#store.jobs.renewLease(jobId, this.workerId, this.#leaseUntil());
      if (!held) {
        abort.abort(new LeaseLost());
        return;
      }
      // Another vault process may have accepted a cancel for this job.
      const job = await this.#store.jobs.get(jobId);
      if (job?.cancelRequested && !abort.signal.aborted) {
        abort.abort(new HavenError('conflict', 'The job was cancelled'));
      }
    } catch {
      // Transient database trouble: the next renewal tries again before the lease ends.
    }
  }

  async #runSteps(claimed: Job, abort: AbortController): Promise<void> {
    let job = claimed;
    const definition = this.#definitions.get(job.kind);
    if (!definition) {
      await this.#finish(job, 'failed', {
        code: 'unknown_job_kind',
        message: `This vault does not know how to run jobs of kind '${job.kind}'`,
      });
      return;
    }
    const steps = definition.steps(job.input);
    if (!job.startedAt) await this.#store.jobs.update(job.id, { startedAt: isoNow(this.#clock) });
    this.#changed(job.id);

    for (const persisted of job.steps) {
      if (persisted.state === 'succeeded' || persisted.state === 'skipped') continue;
      const step = steps.find((s) => s.name === persisted.name);
      if (!step) {
        await this.#failStep(job, persisted, {
          code: 'unknown_step',
          message: `Step '${persisted.name}' is not part of job kind '${job.kind}' in this vault version`,
        });
        return;
      }
      job = (await this.#store.jobs.get(job.id)) ?? job;
      if (job.cancelRequested && !this.#pointOfNoReturnPassed(job)) {
        await this.#finish(job, 'cancelled', null);
        return;
      }
      const resumed = persisted.state === 'running';
      if (resumed && !step.retrySafe) {
        await this.#failStep(job, persisted, {
          code: 'interrupted',
          message:
            `The vault stopped while step '${step.title}' was running, and that step is not safe to repeat, ` +
            `so the job was stopped here. Check ${job.targetType} '${job.targetId ?? '-'}' and run the operation again.`,
        });
        return;
      }
      await this.#runStep(job, persisted, step, resumed, abort);
      job = (await this.#store.jobs.get(job.id)) ?? job;
      if (job.state === 'waiting') return;
      const after = job.steps[persisted.index];
      if (after?.state === 'failed') {
        await this.#finish(job, 'failed', after.error);
        return;
      }
      if (after?.state === 'cancelled') {
        await this.#finish(job, 'cancelled', null);
        return;
      }
    }
    await this.#finish(job, 'succeeded', null);
  }

  async #runStep(
    job: Job,
    persisted: JobStep,
    step: StepDefinition,
    resumed: boolean,
    abort: AbortController,
  ): Promise<void> {
    const store = this.#store;
    await store.jobs.updateStep(job.id, persisted.index, {
      state: 'running',
      startedAt: persisted.startedAt ?? isoNow(this.#clock),
      message: resumed ? 'Resumed after a vault restart' : null,
      error: null,
    });
    this.#changed(job.id);

    let lastWrite = 0;
    let pending: Promise<unknown> = Promise.resolve();
    const context = {
      job,
      input: job.input,
      signal: abort.signal,
      isResumed: resumed,
      carriedOver: Date.parse(job.createdAt) < this.#startedAt,
      progress: (percent: number, message?: string) => {
        const now = Date.now();
        if (now - lastWrite < this.#progressIntervalMs && percent < 100) return;
        lastWrite = now;
        const value = Math.max(0, Math.min(100, Math.round(percent)));
        pending = pending
          .then(() =>
            store.jobs.updateStep(job.id, persisted.index, {
              progress: value,
              ...(message === undefined ? {} : { message }),
            }),
          )
          .then(() => this.#updateOverall(job.id))
          .catch(() => {});
      },
      waitForOperator: async (instructions: string): Promise<never> => {
        throw new OperatorWait(instructions);
      },
      // Kept with the step only: the job's output, as read, merges every step's (for the steps after it).
      output: async (patch: Record<string, unknown>) => {
        const step = (await store.jobs.get(job.id))?.steps[persisted.index];
        await store.jobs.updateStep(job.id, persisted.index, { output: { ...step?.output, ...patch } });
        this.#changed(job.id);
      },
    };

    try {
      await step.run(context);
      await pending;
      if (abort.signal.reason instanceof LeaseLost) throw abort.signal.reason;
      await store.jobs.updateStep(job.id, persisted.index, {
        state: 'succeeded',
        progress: 100,
        finishedAt: isoNow(this.#clock),
      });
    } catch (error) {
      await pending;
      if (error instanceof LeaseLost || abort.signal.reason instanceof LeaseLost) throw new LeaseLost();
      if (error instanceof OperatorWait && !abort.signal.aborted) {
        // The step stays 'running' with the instructions: resume() marks it done.
        await store.jobs.updateStep(job.id, persisted.index, { message: error.instructions });
        await store.jobs.update(job.id, { state: 'waiting' });
        await this.#updateOverall(job.id);
        return;
      }
      const cancelled = abort.signal.aborted;
      await store.jobs.updateStep(job.id, persisted.index, {
        state: cancelled ? 'cancelled' : 'failed',
        finishedAt: isoNow(this.#clock),
        error: cancelled ? null : toJobError(error),
      });
    }
    await this.#updateOverall(job.id);
  }

  async #failStep(job: Job, step: JobStep, error: JobError): Promise<void> {
    await this.#store.jobs.updateStep(job.id, step.index, {
      state: 'failed',
      finishedAt: isoNow(this.#clock),
      error,
    });
    await this.#finish(job, 'failed', error);
  }

  async #finish(job: Job, outcome: JobOutcome, error: JobError | null): Promise<void> {
    const definition = this.#definitions.get(job.kind);
    const fresh = (await this.#store.jobs.get(job.id)) ?? job;
    let settleError: JobError | null = null;
    if (definition?.settle) {
      try {
        await definition.settle({ job: fresh, input: fresh.input, outcome, error });
      } catch (e) {
        settleError = toJobError(e);
      }
    }
    const finalOutcome = settleError && outcome === 'succeeded' ? 'failed' : outcome;
    await this.#store.jobs.update(job.id, {
      state: finalOutcome,
      finishedAt: isoNow(this.#clock),
      error: error ?? settleError,
      ...(finalOutcome === 'succeeded' ? { progress: 100 } : {}),
    });
    // Steps never started stay visible as skipped so the job page reads as a whole story.
    for (const step of fresh.steps) {
      if (step.state === 'pending')
        await this.#store.jobs.updateStep(job.id, step.index, { state: 'skipped' });
    }
    this.#changed(job.id);
  }

  async #updateOverall(jobId: string): Promise<void> {
    const job = await this.#store.jobs.get(jobId);
    if (!job) return;
    const definition = this.#definitions.get(job.kind);
    const weights = definition ? definition.steps(job.input).map((s) => s.weight ?? 1) : [];
    let total = 0;
    let done = 0;
    for (const step of job.steps) {
      const weight = weights[step.index] ?? 1;
      total += weight;
      const finished = step.state === 'succeeded' || step.state === 'skipped';
      done += weight * (finished ? 100 : step.progress);
    }
    const progress = total === 0 ? 0 : Math.floor(done / total);
    if (progress !== job.progress) await this.#store.jobs.update(jobId, { progress });
    this.#changed(jobId);
  }

  #pointOfNoReturnPassed(job: Job): JobStep | undefined {
    const definition = this.#definitions.get(job.kind);
    if (!definition) return undefined;
    const steps = definition.steps(job.input);
    return job.steps.find(
      (persisted) =>
        persisted.state !== 'pending' &&
        steps.find((s) => s.name === persisted.name)?.pointOfNoReturn === true,
    );
  }

  #changed(jobId: string): void {
    this.emit('change', jobId);
  }
}

/** A step asked to wait for an operator (StepContext.waitForOperator). */
class OperatorWait extends Error {
  readonly instructions: string;
  constructor(instructions: string) {
    super('waiting for an operator');
    this.instructions = instructions;
  }
}

/** This process no longer holds the job (its lease expired and another vault took it). */
class LeaseLost extends Error {
  constructor() {
    super('job lease lost');
  }
}

export function toJobError(error: unknown): JobError {
  if (error instanceof HavenError) return { code: error.code, message: error.message };
  if (error instanceof Error) return { code: 'internal', message: error.message };
  return { code: 'internal', message: String(error) };
}
