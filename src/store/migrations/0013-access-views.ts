import type { Kysely, Migration } from 'kysely';

/**
 * Recovery points opened to NBD clients, kept so a restarted vault still
 * lists them and reconciles them with their hosts. No key is stored: only
 * the operator who opened a view and the host serving it hold it.
 */
export const accessViewsMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('access_views')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('machine_id', 'text', (c) => c.notNull())
      .addColumn('machine_name', 'text', (c) => c.notNull())
      .addColumn('point_id', 'text', (c) => c.notNull())
      .addColumn('point_time', 'text', (c) => c.notNull())
      .addColumn('host_id', 'text', (c) => c.notNull())
      .addColumn('writable', 'boolean', (c) => c.notNull())
      .addColumn('opened_by', 'text', (c) => c.notNull())
      .addColumn('opened_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('disks', 'text', (c) => c.notNull())
      .addColumn('closed_at', 'text')
      .addColumn('closed_reason', 'text')
      .execute();
    await db.schema.createIndex('access_views_closed_at').on('access_views').column('closed_at').execute();
  },
};
