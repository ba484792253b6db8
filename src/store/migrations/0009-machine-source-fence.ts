import type { Kysely, Migration } from 'kysely';

/**
 * Whether the source a failover left behind was verified stopped (JSON:
 * host, name, reason, when). Written only by its own repository method, so
 * a job saving the machine cannot undo what the vault recorded meanwhile.
 */
export const machineSourceFenceMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('machines').addColumn('source_fence', 'text').execute();
  },
};
