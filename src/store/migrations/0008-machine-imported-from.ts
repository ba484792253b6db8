import type { Kysely, Migration } from 'kysely';

/**
 * The hypervisor domain a machine was imported from (`machines import`): its
 * driver, connection URI, name and UUID. Null for machines registered by hand.
 */
export const machineImportedFromMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('machines').addColumn('imported_from', 'text').execute();
  },
};
