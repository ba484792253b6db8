import { type ExpressionBuilder, type Kysely, type Selectable, sql, type Updateable } from 'kysely';
import type { Job, JobError, JobState, JobStep, StepState } from '../../domain/model.ts';
import { notFound } from '../../errors/index.ts';
import {
  affectedRows,
  fromBooleanColumn,
  fromJsonColumn,
  fromNullableJsonColumn,
  toBooleanColumn,
  toJsonColumn,
} from '../column-codec.ts';
import { checkedWrite } from '../constraint-violation.ts';
import type { Database, JobStepsTable, JobsTable } from '../schema.ts';
import type { JobFilter, JobPatch, JobRepository, JobStepPatch } from '../store.ts';

export class KyselyJobRepository implements JobRepository {
  readonly #db: Kysely<Database>;
  readonly #dialect: 'sqlite' | 'postgres';

  constructor(db: Kysely<Database>, dialect: 'sqlite' | 'postgres') {
    this.#db = db;
    this.#dialect = dialect;
  }

  /** The job row and its steps in one transaction: a job is never seen without its steps. */
  async create(job: Job): Promise<void> {
    await checkedWrite('job', job.id, () =>
      this.#db.transaction().execute(async (trx) => {
        await trx
          .insertInto('jobs')
          .values({
            id: job.id,
            kind: job.kind,
            target_type: job.targetType,
            target_id: job.targetId,
            state: job.state,
            progress: job.progress,
            input: toJsonColumn(job.input),
            output: toJsonColumn(job.output),
            created_by: job.createdBy,
            created_at: job.createdAt,
            started_at: job.startedAt,
            finished_at: job.finishedAt,
            error: job.error === null ? null : toJsonColumn(job.error),
            cancel_requested: toBooleanColumn(job.cancelRequested),
            worker_id: null,
            lease_until: null,
          })
          .execute();
        if (job.steps.length === 0) return;
        await trx
          .insertInto('job_steps')
          .values(
            job.steps.map((step) => ({
              job_id: job.id,
              idx: step.index,
              name: step.name,
              title: step.title,
              state: step.state,
              progress: step.progress,
              message: step.message,
              started_at: step.startedAt,
              finished_at: step.finishedAt,
              error: step.error === null ? null : toJsonColumn(step.error),
              output: step.output === null ? null : toJsonColumn(step.output),
            })),
          )
          .execute();
      }),
    );
  }

  async get(id: string): Promise<Job | undefined> {
    const row = await this.#db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) return undefined;
    const steps = await this.#db
      .selectFrom('job_steps')
      .selectAll()
      .where('job_id', '=', id)
      .orderBy('idx')
      .execute();
    return toJob(row, steps);
  }

  /** Newest first, each with its steps (fetched in one query for the whole page). */
  async list(filter: JobFilter = {}): Promise<Job[]> {
    let query = this.#db.selectFrom('jobs').selectAll().orderBy('created_at', 'desc').orderBy('id', 'desc');
    if (filter.state !== undefined) query = query.where('state', '=', filter.state);
    if (filter.targetId !== undefined) query = query.where('target_id', '=', filter.targetId);
    if (filter.limit !== undefined) query = query.limit(filter.limit);
    const rows = await query.execute();
    if (rows.length === 0) return [];
    const steps = await this.#db
      .selectFrom('job_steps')
      .selectAll()
      .where(
        'job_id',
        'in',
        rows.map((row) => row.id),
      )
      .orderBy('job_id')
      .orderBy('idx')
      .execute();
    const byJob = Map.groupBy(steps, (step) => step.job_id);
    return rows.map((row) => toJob(row, byJob.get(row.id) ?? []));
  }

  async update(id: string, patch: JobPatch): Promise<void> {
    const set: Updateable<JobsTable> = {};
    if (patch.state !== undefined) set.state = patch.state;
    if (patch.progress !== undefined) set.progress = patch.progress;
    if (patch.output !== undefined) set.output = toJsonColumn(patch.output);
    if (patch.startedAt !== undefined) set.started_at = patch.startedAt;
    if (patch.finishedAt !== undefined) set.finished_at = patch.finishedAt;
    if (patch.error !== undefined) set.error = patch.error === null ? null : toJsonColumn(patch.error);
    if (patch.cancelRequested !== undefined) set.cancel_requested = toBooleanColumn(patch.cancelRequested);
    if (Object.keys(set).length === 0) return;
    const result = await this.#db.updateTable('jobs').set(set).where('id', '=', id).executeTakeFirst();
    if (affectedRows(result) === 0) throw notFound('job', id);
  }

  async updateStep(jobId: string, index: number, patch: JobStepPatch): Promise<void> {
    const set: Updateable<JobStepsTable> = {};
    if (patch.state !== undefined) set.state = patch.state;
    if (patch.progress !== undefined) set.progress = patch.progress;
    if (patch.message !== undefined) set.message = patch.message;
    if (patch.startedAt !== undefined) set.started_at = patch.startedAt;
    if (patch.finishedAt !== undefined) set.finished_at = patch.finishedAt;
    if (patch.error !== undefined) set.error = patch.error === null ? null : toJsonColumn(patch.error);
    if (patch.output !== undefined) set.output = toJsonColumn(patch.output);
    if (Object.keys(set).length === 0) return;
    const result = await this.#db
      .updateTable('job_steps')
      .set(set)
      .where('job_id', '=', jobId)
      .where('idx', '=', index)
      .executeTakeFirst();
    if (affectedRows(result) === 0) throw notFound('job step', `${jobId}#${index}`);
  }

  /**
   * One UPDATE whose target is chosen by a subquery, so choosing and taking
   * the job is atomic. On PostgreSQL the subquery locks the row FOR UPDATE
   * SKIP LOCKED: concurrent vaults each take a different job instead of
   * queueing behind one row. On SQLite the statement holds the write lock.
   * 'waiting' jobs (waiting for an operator) are never runnable.
   */
  async claim(workerId: string, now: string, leaseUntil: string): Promise<Job | undefined> {
    const postgres = this.#dialect === 'postgres';
    const claimed = await this.#db
      .updateTable('jobs')
      .set({
        state: 'running',
        worker_id: workerId,
        lease_until: leaseUntil,
        started_at: sql<string>`coalesce(started_at, ${now})`,
      })
      .where('id', '=', (eb) => {
        const oldest = eb
          .selectFrom('jobs')
          .select('id')
          .where(runnable(now))
          .orderBy('created_at')
          .orderBy('id')
          .limit(1);
        return postgres ? oldest.forUpdate().skipLocked() : oldest;
      })
      // Checked again on the row actually updated: belt and braces should the
      // row change between the subquery and the update.
      .where(runnable(now))
      .returning('id')
      .executeTakeFirst();
    return claimed && (await this.get(claimed.id));
  }

  async renewLease(id: string, workerId: string, leaseUntil: string): Promise<boolean> {
    const result = await this.#db
      .updateTable('jobs')
      .set({ lease_until: leaseUntil })
      .where('id', '=', id)
      .where('worker_id', '=', workerId)
      .executeTakeFirst();
    return affectedRows(result) === 1;
  }

  async expireLeases(): Promise<number> {
    const result = await this.#db
      .updateTable('jobs')
      .set({ worker_id: null, lease_until: null })
      .where('state', '=', 'running')
      .executeTakeFirst();
    return affectedRows(result);
  }

  async release(id: string, workerId: string): Promise<void> {
    await this.#db
      .updateTable('jobs')
      .set({ worker_id: null, lease_until: null })
      .where('id', '=', id)
      .where('worker_id', '=', workerId)
      .execute();
  }
}

/** A queued job, or a running one whose worker stopped renewing its lease (or holds none). */
function runnable(now: string) {
  return (eb: ExpressionBuilder<Database, 'jobs'>) =>
    eb.or([
      eb('state', '=', 'queued'),
      eb.and([
        eb('state', '=', 'running'),
        eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]),
      ]),
    ]);
}

/**
 * The job's output as read: every step's (in order), then what was recorded
 * outside steps. The column holds only the latter, except for jobs from
 * before steps kept their own output (and those from before steps stopped
 * writing into it): there it holds the merged output, which this repeats.
 */
function mergedOutput(steps: readonly JobStep[], outside: Record<string, unknown>): Record<string, unknown> {
  return Object.assign({}, ...steps.map((step) => step.output ?? {}), outside);
}

function toJob(row: Selectable<JobsTable>, steps: Selectable<JobStepsTable>[]): Job {
  return {
    id: row.id,
    kind: row.kind,
    targetType: row.target_type as Job['targetType'],
    targetId: row.target_id,
    state: row.state as JobState,
    progress: row.progress,
    input: fromJsonColumn(row.input),
    output: mergedOutput(steps.map(toStep), fromJsonColumn(row.output)),
    createdBy: row.created_by,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    error: fromNullableJsonColumn<JobError>(row.error),
    cancelRequested: fromBooleanColumn(row.cancel_requested),
    steps: steps.map(toStep),
  };
}

function toStep(row: Selectable<JobStepsTable>): JobStep {
  return {
    index: row.idx,
    name: row.name,
    title: row.title,
    state: row.state as StepState,
    progress: row.progress,
    message: row.message,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    error: fromNullableJsonColumn<JobError>(row.error),
    output: fromNullableJsonColumn<Record<string, unknown>>(row.output),
  };
}
