import type { Kysely, Selectable } from 'kysely';
import type { RecoveryPlan, RecoveryPlanGroup } from '../../domain/model.ts';
import { notFound } from '../../errors/index.ts';
import { affectedRows, fromJsonColumn, toJsonColumn } from '../column-codec.ts';
import { checkedWrite } from '../constraint-violation.ts';
import type { Database, RecoveryPlansTable } from '../schema.ts';
import type { PlanRepository } from '../store.ts';

export class KyselyPlanRepository implements PlanRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(plan: RecoveryPlan): Promise<void> {
    await checkedWrite('recovery plan', plan.name, () =>
      this.#db
        .insertInto('recovery_plans')
        .values({ id: plan.id, created_at: plan.createdAt, ...columns(plan) })
        .execute(),
    );
  }

  async get(id: string): Promise<RecoveryPlan | undefined> {
    const row = await this.#db
      .selectFrom('recovery_plans')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toPlan(row);
  }

  async getByName(name: string): Promise<RecoveryPlan | undefined> {
    const row = await this.#db
      .selectFrom('recovery_plans')
      .selectAll()
      .where('name', '=', name)
      .executeTakeFirst();
    return row && toPlan(row);
  }

  async list(): Promise<RecoveryPlan[]> {
    const rows = await this.#db.selectFrom('recovery_plans').selectAll().orderBy('name').execute();
    return rows.map(toPlan);
  }

  async update(plan: RecoveryPlan): Promise<void> {
    const result = await checkedWrite('recovery plan', plan.name, () =>
      this.#db.updateTable('recovery_plans').set(columns(plan)).where('id', '=', plan.id).executeTakeFirst(),
    );
    if (affectedRows(result) === 0) throw notFound('recovery plan', plan.id);
  }

  async delete(id: string): Promise<void> {
    await this.#db.deleteFrom('recovery_plans').where('id', '=', id).execute();
  }
}

function columns(plan: RecoveryPlan) {
  return {
    name: plan.name,
    description: plan.description,
    groups: toJsonColumn(plan.groups),
    updated_at: plan.updatedAt,
  };
}

function toPlan(row: Selectable<RecoveryPlansTable>): RecoveryPlan {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    groups: fromJsonColumn<RecoveryPlanGroup[]>(row.groups),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
