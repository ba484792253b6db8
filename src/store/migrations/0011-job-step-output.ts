import type { Kysely, Migration } from 'kysely';

/**
 * What each job step recorded, kept with the step. Steps of older jobs keep
 * no output (null): their job's merged output stays the whole record.
 */
export const jobStepOutputMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('job_steps').addColumn('output', 'text').execute();
  },
};
