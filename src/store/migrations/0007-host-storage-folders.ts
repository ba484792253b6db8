import type { Kysely, Migration } from 'kysely';

/**
 * The folders a host attaches disk images from (`haven host --storage DIR`),
 * as the host last reported them: the vault refuses a disk source outside
 * them when the machine is registered. Null until the host reports them.
 */
export const hostStorageFoldersMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('hosts').addColumn('storage_folders', 'text').execute();
  },
};
