import type { Kysely, Selectable } from 'kysely';
import { affectedRows } from '../column-codec.ts';
import { checkedWrite } from '../constraint-violation.ts';
import type { Database, EnrolmentTokensTable } from '../schema.ts';
import type { EnrolmentRepository, EnrolmentToken } from '../store.ts';

export class KyselyEnrolmentRepository implements EnrolmentRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(token: EnrolmentToken): Promise<void> {
    await checkedWrite(
      'enrolment token',
      token.id,
      () =>
        this.#db
          .insertInto('enrolment_tokens')
          .values({
            id: token.id,
            secret_hash: token.secretHash,
            site_id: token.siteId,
            host_name: token.hostName,
            created_by: token.createdBy,
            created_at: token.createdAt,
            expires_at: token.expiresAt,
            used_at: token.usedAt,
            used_by_host_id: token.usedByHostId,
          })
          .execute(),
      'site',
    );
  }

  async get(id: string): Promise<EnrolmentToken | undefined> {
    const row = await this.#db
      .selectFrom('enrolment_tokens')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toToken(row);
  }

  /**
   * One conditional UPDATE: the database serialises concurrent attempts on the
   * row and re-checks `used_at is null`, so exactly one caller gets a row.
   */
  async consume(id: string, hostId: string, at: string): Promise<boolean> {
    const result = await this.#db
      .updateTable('enrolment_tokens')
      .set({ used_at: at, used_by_host_id: hostId })
      .where('id', '=', id)
      .where('used_at', 'is', null)
      .where('expires_at', '>', at)
      .executeTakeFirst();
    return affectedRows(result) === 1;
  }

  async list(): Promise<EnrolmentToken[]> {
    const rows = await this.#db
      .selectFrom('enrolment_tokens')
      .selectAll()
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .execute();
    return rows.map(toToken);
  }
}

function toToken(row: Selectable<EnrolmentTokensTable>): EnrolmentToken {
  return {
    id: row.id,
    secretHash: row.secret_hash,
    siteId: row.site_id,
    hostName: row.host_name,
    createdBy: row.created_by,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    usedAt: row.used_at,
    usedByHostId: row.used_by_host_id,
  };
}
