import type { Kysely, Migration } from 'kysely';

/**
 * Where a machine's copies run outside its normal life: the drill copy of a
 * test failover and the machine started at the other site by a failover
 * (host, point-in-time view, hypervisor name). Jobs write it; the next
 * operation (cleanup, change point, commit, reprotect) reads it.
 */
export const machineRuntimeMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('machines').addColumn('runtime', 'text').execute();
  },
};
