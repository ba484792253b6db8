import type { Kysely, Migration } from 'kysely';

/**
 * The passwords of servers' BMCs, in a table of their own: the machine
 * record (`server.bmc`) holds where the BMC is and as whom, and is shown in
 * API answers; the password is read only to hand it to the server's primary
 * host for one BMC call, and goes with its machine.
 */
export const serverBmcPasswordsMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('server_bmc_passwords')
      .addColumn('machine_id', 'text', (c) => c.primaryKey().references('machines.id').onDelete('cascade'))
      .addColumn('password', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
  },
};
