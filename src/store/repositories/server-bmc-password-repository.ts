import type { Kysely } from 'kysely';
import type { Database } from '../schema.ts';
import type { ServerBmcPasswordRepository } from '../store.ts';

export class KyselyServerBmcPasswordRepository implements ServerBmcPasswordRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async get(machineId: string): Promise<string | undefined> {
    const row = await this.#db
      .selectFrom('server_bmc_passwords')
      .select('password')
      .where('machine_id', '=', machineId)
      .executeTakeFirst();
    return row?.password;
  }

  async set(machineId: string, password: string, at: string): Promise<void> {
    await this.#db
      .insertInto('server_bmc_passwords')
      .values({ machine_id: machineId, password, updated_at: at })
      .onConflict((oc) => oc.column('machine_id').doUpdateSet({ password, updated_at: at }))
      .execute();
  }

  async delete(machineId: string): Promise<void> {
    await this.#db.deleteFrom('server_bmc_passwords').where('machine_id', '=', machineId).execute();
  }
}
