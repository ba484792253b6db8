import type { Kysely, Migration } from 'kysely';

/**
 * The hypervisor domain a machine was imported from (`machines import`): its
 * driver, connection URI, name and UUID. Null for machines registered by hand.
 * And each host's hypervisor inventory as it last reported it, with when.
 */
export const machineImportedFromMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('machines').addColumn('imported_from', 'text').execute();
    await db.schema.alterTable('hosts').addColumn('hypervisor_inventory', 'text').execute();
    await db.schema.alterTable('hosts').addColumn('hypervisor_inventory_at', 'text').execute();
  },
};
