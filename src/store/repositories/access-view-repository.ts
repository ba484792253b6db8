import type { Kysely, Selectable } from 'kysely';
import type { AccessView, AccessViewDisk, ViewClosedReason } from '../../domain/model.ts';
import {
  affectedRows,
  fromBooleanColumn,
  fromJsonColumn,
  fromNullableJsonColumn,
  toBooleanColumn,
  toJsonColumn,
} from '../column-codec.ts';
import type { AccessViewsTable, Database } from '../schema.ts';
import type { AccessViewRepository } from '../store.ts';

export class KyselyAccessViewRepository implements AccessViewRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async add(view: AccessView): Promise<void> {
    await this.#db
      .insertInto('access_views')
      .values({
        id: view.id,
        machine_id: view.machineId,
        machine_name: view.machineName,
        point_id: view.pointId,
        point_time: view.pointTime,
        host_id: view.hostId,
        writable: toBooleanColumn(view.writable),
        opened_by: view.openedBy,
        opened_at: view.openedAt,
        expires_at: view.expiresAt,
        disks: toJsonColumn(view.disks),
        closed_at: view.closedAt,
        closed_reason: view.closedReason === null ? null : toJsonColumn(view.closedReason),
      })
      .execute();
  }

  async get(id: string): Promise<AccessView | undefined> {
    const row = await this.#db.selectFrom('access_views').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toAccessView(row);
  }

  async list(filter: { open?: boolean; machineId?: string; hostId?: string } = {}): Promise<AccessView[]> {
    let query = this.#db.selectFrom('access_views').selectAll();
    if (filter.open === true) query = query.where('closed_at', 'is', null);
    if (filter.machineId !== undefined) query = query.where('machine_id', '=', filter.machineId);
    if (filter.hostId !== undefined) query = query.where('host_id', '=', filter.hostId);
    const rows = await query.orderBy('opened_at').orderBy('id').execute();
    return rows.map(toAccessView);
  }

  async close(id: string, at: string, reason: ViewClosedReason): Promise<boolean> {
    const result = await this.#db
      .updateTable('access_views')
      .set({ closed_at: at, closed_reason: toJsonColumn(reason) })
      .where('id', '=', id)
      .where('closed_at', 'is', null)
      .executeTakeFirst();
    return affectedRows(result) > 0;
  }
}

function toAccessView(row: Selectable<AccessViewsTable>): AccessView {
  return {
    id: row.id,
    machineId: row.machine_id,
    machineName: row.machine_name,
    pointId: row.point_id,
    pointTime: row.point_time,
    hostId: row.host_id,
    writable: fromBooleanColumn(row.writable),
    openedBy: row.opened_by,
    openedAt: row.opened_at,
    expiresAt: row.expires_at,
    disks: fromJsonColumn<AccessViewDisk[]>(row.disks),
    closedAt: row.closed_at,
    closedReason: fromNullableJsonColumn<ViewClosedReason>(row.closed_reason),
  };
}
