import type { Kysely, Migration } from 'kysely';

/**
 * Replication figures per machine over time: one row per bucket of each
 * resolution tier (see domain/replication-history.ts), pruned as it ages.
 */
export const replicationHistoryMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('replication_samples')
      .addColumn('machine_id', 'text', (c) => c.notNull().references('machines.id').onDelete('cascade'))
      .addColumn('resolution_seconds', 'integer', (c) => c.notNull())
      .addColumn('bucket_at', 'text', (c) => c.notNull())
      .addColumn('samples', 'integer', (c) => c.notNull())
      .addColumn('throughput', 'double precision', (c) => c.notNull())
      .addColumn('pending_bytes', 'bigint', (c) => c.notNull())
      .addColumn('rpo_seconds', 'double precision')
      .addPrimaryKeyConstraint('replication_samples_pkey', ['machine_id', 'resolution_seconds', 'bucket_at'])
      .execute();
  },
};
