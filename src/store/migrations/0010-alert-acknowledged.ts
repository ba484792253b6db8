import type { Kysely, Migration } from 'kysely';

/** Who acknowledged an open alert and when; the alert stays open until its condition clears. */
export const alertAcknowledgedMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('alerts').addColumn('acknowledged_at', 'text').execute();
    await db.schema.alterTable('alerts').addColumn('acknowledged_by', 'text').execute();
  },
};
