import type { Kysely, Migration } from 'kysely';

/**
 * Drill schedules and the drills they (or operators) ran. A run keeps its
 * machines' points, checks and evidence as one JSON document: it is written
 * by one job and read whole, for the history and the report.
 */
export const drillsMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('drill_schedules')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('target_kind', 'text', (c) => c.notNull())
      .addColumn('target_id', 'text', (c) => c.notNull())
      .addColumn('cadence', 'text', (c) => c.notNull())
      .addColumn('point_choice', 'text', (c) => c.notNull())
      .addColumn('test_network', 'text')
      .addColumn('max_concurrent_per_host', 'integer', (c) => c.notNull())
      .addColumn('time_limit_seconds', 'integer', (c) => c.notNull())
      .addColumn('checks', 'text', (c) => c.notNull())
      .addColumn('on_conflict', 'text', (c) => c.notNull())
      .addColumn('enabled', 'boolean', (c) => c.notNull())
      .addColumn('next_run_at', 'text')
      .addColumn('last_run_at', 'text')
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('drill_runs')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('schedule_id', 'text')
      .addColumn('target_kind', 'text', (c) => c.notNull())
      .addColumn('target_id', 'text', (c) => c.notNull())
      .addColumn('target_name', 'text', (c) => c.notNull())
      .addColumn('job_id', 'text')
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('reason', 'text')
      .addColumn('machines', 'text', (c) => c.notNull())
      .addColumn('rto_seconds', 'double precision')
      .addColumn('checks', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text')
      .addColumn('ended_at', 'text')
      .execute();
    await db.schema
      .createIndex('drill_runs_target')
      .on('drill_runs')
      .columns(['target_kind', 'target_id', 'created_at'])
      .execute();
    await db.schema.createIndex('drill_runs_state').on('drill_runs').column('state').execute();
    // Which machines a run drilled and whether each one's checks passed: a plan drill proves its machines too.
    await db.schema
      .createTable('drill_run_machines')
      .addColumn('run_id', 'text', (c) => c.notNull().references('drill_runs.id').onDelete('cascade'))
      .addColumn('machine_id', 'text', (c) => c.notNull())
      .addColumn('passed', 'boolean', (c) => c.notNull())
      .addColumn('ended_at', 'text')
      .addPrimaryKeyConstraint('drill_run_machines_pk', ['run_id', 'machine_id'])
      .execute();
    await db.schema
      .createIndex('drill_run_machines_machine')
      .on('drill_run_machines')
      .columns(['machine_id', 'ended_at'])
      .execute();
  },
};
