import type { Kysely, Migration } from 'kysely';

/**
 * A recovery point's place in its machine's replica history (journal
 * sequence): points are ordered by it, never by their ids as text.
 */
export const recoveryPointSequenceMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .alterTable('recovery_points')
      .addColumn('sequence', 'bigint', (c) => c.notNull().defaultTo(0))
      .execute();
  },
};
