import type { Kysely, Selectable } from 'kysely';
import type { Site, SiteRole } from '../../domain/model.ts';
import { notFound } from '../../errors/index.ts';
import { affectedRows, fromJsonColumn, toJsonColumn } from '../column-codec.ts';
import { checkedWrite } from '../constraint-violation.ts';
import type { Database, SitesTable } from '../schema.ts';
import type { SiteRepository } from '../store.ts';

export class KyselySiteRepository implements SiteRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(site: Site): Promise<void> {
    await checkedWrite('site', site.name, () =>
      this.#db
        .insertInto('sites')
        .values({ id: site.id, created_at: site.createdAt, ...columns(site) })
        .execute(),
    );
  }

  async get(id: string): Promise<Site | undefined> {
    const row = await this.#db.selectFrom('sites').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toSite(row);
  }

  async getByName(name: string): Promise<Site | undefined> {
    const row = await this.#db.selectFrom('sites').selectAll().where('name', '=', name).executeTakeFirst();
    return row && toSite(row);
  }

  async list(): Promise<Site[]> {
    const rows = await this.#db.selectFrom('sites').selectAll().orderBy('name').execute();
    return rows.map(toSite);
  }

  async update(site: Site): Promise<void> {
    const result = await checkedWrite('site', site.name, () =>
      this.#db.updateTable('sites').set(columns(site)).where('id', '=', site.id).executeTakeFirst(),
    );
    if (affectedRows(result) === 0) throw notFound('site', site.id);
  }
}

function columns(site: Site) {
  return {
    name: site.name,
    role: site.role,
    network_mapping: toJsonColumn(site.networkMapping),
    test_network: site.testNetwork,
  };
}

function toSite(row: Selectable<SitesTable>): Site {
  return {
    id: row.id,
    name: row.name,
    role: row.role as SiteRole,
    networkMapping: fromJsonColumn(row.network_mapping),
    testNetwork: row.test_network,
    createdAt: row.created_at,
  };
}
