import type { Kysely, Migration } from 'kysely';

/**
 * The vault's latest view of each machine's replication (state, RPO, bytes
 * pending, throughput), written by the replication monitor alone, so the API
 * and the portal answer without asking every host.
 */
export const machineReplicationMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('machines').addColumn('replication', 'text').execute();
  },
};
