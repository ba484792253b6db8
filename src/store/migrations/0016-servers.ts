import type { Kysely, Migration } from 'kysely';

/**
 * Physical servers: a machine's `server` settings (JSON, null for VMs; its
 * disks' `serverDevice` lives in the disks' JSON), and the one-time tokens a
 * server's agent enrols with, stored hashed. Issuing a new token for a
 * machine marks the older ones replaced, so a refusal can say why.
 */
export const serversMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('machines').addColumn('server', 'text').execute();
    await db.schema
      .createTable('server_enrolment_tokens')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('secret_hash', 'text', (c) => c.notNull())
      .addColumn('machine_id', 'text', (c) => c.notNull().references('machines.id').onDelete('cascade'))
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('used_at', 'text')
      .addColumn('replaced_at', 'text')
      .execute();
    await db.schema
      .createIndex('server_enrolment_tokens_machine')
      .on('server_enrolment_tokens')
      .column('machine_id')
      .execute();
  },
};
