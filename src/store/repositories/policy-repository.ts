import type { Kysely, Selectable } from 'kysely';
import type { Policy } from '../../domain/model.ts';
import { notFound } from '../../errors/index.ts';
import { affectedRows, fromBooleanColumn, toBooleanColumn } from '../column-codec.ts';
import { checkedWrite } from '../constraint-violation.ts';
import type { Database, PoliciesTable } from '../schema.ts';
import type { PolicyRepository } from '../store.ts';

export class KyselyPolicyRepository implements PolicyRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(policy: Policy): Promise<void> {
    await checkedWrite('policy', policy.name, () =>
      this.#db
        .insertInto('policies')
        .values({ id: policy.id, created_at: policy.createdAt, ...columns(policy) })
        .execute(),
    );
  }

  async get(id: string): Promise<Policy | undefined> {
    const row = await this.#db.selectFrom('policies').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toPolicy(row);
  }

  async getByName(name: string): Promise<Policy | undefined> {
    const row = await this.#db.selectFrom('policies').selectAll().where('name', '=', name).executeTakeFirst();
    return row && toPolicy(row);
  }

  async list(): Promise<Policy[]> {
    const rows = await this.#db.selectFrom('policies').selectAll().orderBy('name').execute();
    return rows.map(toPolicy);
  }

  async update(policy: Policy): Promise<void> {
    const result = await checkedWrite('policy', policy.name, () =>
      this.#db.updateTable('policies').set(columns(policy)).where('id', '=', policy.id).executeTakeFirst(),
    );
    if (affectedRows(result) === 0) throw notFound('policy', policy.id);
  }

  async delete(id: string): Promise<void> {
    await this.#db.deleteFrom('policies').where('id', '=', id).execute();
  }
}

function columns(policy: Policy) {
  return {
    name: policy.name,
    rpo_threshold_seconds: policy.rpoThresholdSeconds,
    retention_seconds: policy.retentionSeconds,
    app_consistent_frequency_seconds: policy.appConsistentFrequencySeconds,
    built_in: toBooleanColumn(policy.builtIn),
  };
}

function toPolicy(row: Selectable<PoliciesTable>): Policy {
  return {
    id: row.id,
    name: row.name,
    rpoThresholdSeconds: row.rpo_threshold_seconds,
    retentionSeconds: row.retention_seconds,
    appConsistentFrequencySeconds: row.app_consistent_frequency_seconds,
    builtIn: fromBooleanColumn(row.built_in),
    createdAt: row.created_at,
  };
}
