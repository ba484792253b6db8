import type { Kysely, Selectable } from 'kysely';
import type { ApiToken, Role } from '../../domain/model.ts';
import { fromBigIntColumn } from '../column-codec.ts';
import { checkedWrite } from '../constraint-violation.ts';
import type { ApiTokensTable, Database } from '../schema.ts';
import type { StoredApiToken, TokenRepository } from '../store.ts';

export class KyselyTokenRepository implements TokenRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(token: StoredApiToken): Promise<void> {
    await checkedWrite('api token', token.name, () =>
      this.#db
        .insertInto('api_tokens')
        .values({
          id: token.id,
          name: token.name,
          role: token.role,
          secret_hash: token.secretHash,
          created_at: token.createdAt,
          last_used_at: token.lastUsedAt,
        })
        .execute(),
    );
  }

  async getBySecretHash(secretHash: string): Promise<StoredApiToken | undefined> {
    const row = await this.#db
      .selectFrom('api_tokens')
      .selectAll()
      .where('secret_hash', '=', secretHash)
      .executeTakeFirst();
    return row && { ...toToken(row), secretHash: row.secret_hash };
  }

  /** Never returns the secret hashes. */
  async list(): Promise<ApiToken[]> {
    const rows = await this.#db
      .selectFrom('api_tokens')
      .selectAll()
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toToken);
  }

  async touch(id: string, at: string): Promise<void> {
    await this.#db.updateTable('api_tokens').set({ last_used_at: at }).where('id', '=', id).execute();
  }

  async delete(id: string): Promise<void> {
    await this.#db.deleteFrom('api_tokens').where('id', '=', id).execute();
  }

  async countByRole(role: Role): Promise<number> {
    const row = await this.#db
      .selectFrom('api_tokens')
      .select((eb) => eb.fn.countAll().as('count'))
      .where('role', '=', role)
      .executeTakeFirstOrThrow();
    return fromBigIntColumn(row.count);
  }
}

function toToken(row: Selectable<ApiTokensTable>): ApiToken {
  return {
    id: row.id,
    name: row.name,
    role: row.role as Role,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
  };
}
