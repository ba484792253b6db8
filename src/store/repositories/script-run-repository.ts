import type { Kysely, Selectable } from 'kysely';
import { isTerminalJobState } from '../../domain/job-states.ts';
import type { JobState, ScriptRunRecord, ScriptRunState } from '../../domain/model.ts';
import { notFound } from '../../errors/index.ts';
import { affectedRows, fromBigIntColumn, fromBooleanColumn, toBooleanColumn } from '../column-codec.ts';
import type { Database, ScriptRunsTable } from '../schema.ts';
import type { ScriptRunFilter, ScriptRunRepository } from '../store.ts';

export class KyselyScriptRunRepository implements ScriptRunRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(run: ScriptRunRecord): Promise<void> {
    await this.#db
      .insertInto('script_runs')
      .values({
        id: run.id,
        job_id: run.jobId,
        step_name: run.stepName,
        plan_id: run.planId,
        plan_name: run.planName,
        action: run.action,
        script: run.script,
        sha256: run.sha256,
        started_by: run.startedBy,
        run_as: run.runAs,
        run_as_note: run.runAsNote,
        started_at: run.startedAt,
        finished_at: run.finishedAt,
        state: run.state,
        exit_code: run.exitCode,
        signal: run.signal,
        output: run.output,
        output_bytes: run.outputBytes,
        output_truncated: toBooleanColumn(run.outputTruncated),
      })
      .execute();
  }

  async finish(id: string, end: Parameters<ScriptRunRepository['finish']>[1]): Promise<void> {
    const result = await this.#db
      .updateTable('script_runs')
      .set({
        finished_at: end.finishedAt,
        state: end.state,
        exit_code: end.exitCode,
        signal: end.signal,
        output: end.output,
        output_bytes: end.outputBytes,
        output_truncated: toBooleanColumn(end.outputTruncated),
      })
      .where('id', '=', id)
      .executeTakeFirst();
    if (affectedRows(result) === 0) throw notFound('script run', id);
  }

  async get(id: string): Promise<ScriptRunRecord | undefined> {
    const row = await this.#select().where('script_runs.id', '=', id).executeTakeFirst();
    return row && toRun(row);
  }

  async list(filter: ScriptRunFilter = {}): Promise<ScriptRunRecord[]> {
    let query = this.#select();
    if (filter.jobId) query = query.where('script_runs.job_id', '=', filter.jobId);
    const rows = await query
      .orderBy('script_runs.started_at', 'desc')
      .orderBy('script_runs.id')
      .limit(filter.limit ?? 100)
      .execute();
    return rows.map(toRun);
  }

  #select() {
    return this.#db
      .selectFrom('script_runs')
      .leftJoin('jobs', 'jobs.id', 'script_runs.job_id')
      .selectAll('script_runs')
      .select('jobs.state as job_state');
  }
}

function toRun(row: Selectable<ScriptRunsTable> & { job_state: string | null }): ScriptRunRecord {
  const jobEnded = row.job_state === null || isTerminalJobState(row.job_state as JobState);
  return {
    id: row.id,
    jobId: row.job_id,
    stepName: row.step_name,
    planId: row.plan_id,
    planName: row.plan_name,
    action: row.action,
    script: row.script,
    sha256: row.sha256,
    startedBy: row.started_by,
    runAs: row.run_as,
    runAsNote: row.run_as_note,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    // Never shown as still running once its job is over: the vault stopped while it ran.
    state: row.state === 'running' && jobEnded ? 'interrupted' : (row.state as ScriptRunState),
    exitCode: row.exit_code,
    signal: row.signal,
    output: row.output,
    outputBytes: fromBigIntColumn(row.output_bytes),
    outputTruncated: fromBooleanColumn(row.output_truncated),
  };
}
