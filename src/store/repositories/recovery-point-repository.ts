import type { Kysely, Selectable } from 'kysely';
import type { RecoveryPoint, RecoveryPointType } from '../../domain/model.ts';
import { affectedRows, fromBigIntColumn, fromBooleanColumn, toBooleanColumn } from '../column-codec.ts';
import { checkedWrite } from '../constraint-violation.ts';
import type { Database, RecoveryPointsTable } from '../schema.ts';
import type { RecoveryPointRepository } from '../store.ts';

export class KyselyRecoveryPointRepository implements RecoveryPointRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async add(point: RecoveryPoint): Promise<void> {
    await checkedWrite(
      'recovery point',
      point.id,
      () =>
        this.#db
          .insertInto('recovery_points')
          .values({
            id: point.id,
            machine_id: point.machineId,
            time: point.time,
            type: point.type,
            group_point_id: point.groupPointId,
            processed: toBooleanColumn(point.processed),
            size_bytes: point.sizeBytes,
            sequence: point.sequence,
          })
          .execute(),
      'machine',
    );
  }

  /** Oldest first. */
  async list(machineId: string): Promise<RecoveryPoint[]> {
    const rows = await this.#db
      .selectFrom('recovery_points')
      .selectAll()
      .where('machine_id', '=', machineId)
      .orderBy('time')
      .orderBy('sequence')
      .execute();
    return rows.map(toPoint);
  }

  async get(id: string): Promise<RecoveryPoint | undefined> {
    const row = await this.#db
      .selectFrom('recovery_points')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toPoint(row);
  }

  async deleteAllExcept(machineId: string, keepId: string | null): Promise<number> {
    let query = this.#db.deleteFrom('recovery_points').where('machine_id', '=', machineId);
    if (keepId !== null) query = query.where('id', '!=', keepId);
    return affectedRows(await query.executeTakeFirst());
  }
}

function toPoint(row: Selectable<RecoveryPointsTable>): RecoveryPoint {
  return {
    id: row.id,
    machineId: row.machine_id,
    time: row.time,
    type: row.type as RecoveryPointType,
    groupPointId: row.group_point_id,
    processed: fromBooleanColumn(row.processed),
    sizeBytes: fromBigIntColumn(row.size_bytes),
    sequence: fromBigIntColumn(row.sequence),
  };
}
