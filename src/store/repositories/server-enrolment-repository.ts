import type { Kysely, Selectable } from 'kysely';
import { affectedRows } from '../column-codec.ts';
import { checkedWrite } from '../constraint-violation.ts';
import type { Database, ServerEnrolmentTokensTable } from '../schema.ts';
import type { ServerEnrolmentRepository, ServerEnrolmentToken } from '../store.ts';

export class KyselyServerEnrolmentRepository implements ServerEnrolmentRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async issue(token: ServerEnrolmentToken): Promise<void> {
    await checkedWrite(
      'server enrolment token',
      token.id,
      () =>
        this.#db.transaction().execute(async (trx) => {
          await trx
            .updateTable('server_enrolment_tokens')
            .set({ replaced_at: token.createdAt })
            .where('machine_id', '=', token.machineId)
            .where('used_at', 'is', null)
            .where('replaced_at', 'is', null)
            .execute();
          await trx
            .insertInto('server_enrolment_tokens')
            .values({
              id: token.id,
              secret_hash: token.secretHash,
              machine_id: token.machineId,
              created_by: token.createdBy,
              created_at: token.createdAt,
              expires_at: token.expiresAt,
              used_at: token.usedAt,
              replaced_at: token.replacedAt,
            })
            .execute();
        }),
      'machine',
    );
  }

  async get(id: string): Promise<ServerEnrolmentToken | undefined> {
    const row = await this.#db
      .selectFrom('server_enrolment_tokens')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toToken(row);
  }

  /**
   * One conditional UPDATE: the database serialises concurrent attempts on the
   * row and re-checks `used_at is null`, so exactly one caller gets a row.
   */
  async consume(id: string, at: string): Promise<boolean> {
    const result = await this.#db
      .updateTable('server_enrolment_tokens')
      .set({ used_at: at })
      .where('id', '=', id)
      .where('used_at', 'is', null)
      .where('replaced_at', 'is', null)
      .where('expires_at', '>', at)
      .executeTakeFirst();
    return affectedRows(result) === 1;
  }
}

function toToken(row: Selectable<ServerEnrolmentTokensTable>): ServerEnrolmentToken {
  return {
    id: row.id,
    secretHash: row.secret_hash,
    machineId: row.machine_id,
    createdBy: row.created_by,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    usedAt: row.used_at,
    replacedAt: row.replaced_at,
  };
}
