import type { Kysely, Selectable } from 'kysely';
import type { Alert, AlertAcknowledgement, AlertSeverity, NewAlert } from '../../domain/model.ts';
import { affectedRows } from '../column-codec.ts';
import type { AlertsTable, Database } from '../schema.ts';
import type { AlertRepository } from '../store.ts';

export class KyselyAlertRepository implements AlertRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  /**
   * Insert-or-nothing against the partial unique index on open keys, then read
   * the open alert back. If it was cleared in between, raise again.
   */
  async raise(alert: NewAlert): Promise<Alert> {
    for (;;) {
      await this.#db
        .insertInto('alerts')
        .values({
          id: alert.id,
          key: alert.key,
          severity: alert.severity,
          message: alert.message,
          subject_type: alert.subjectType,
          subject_id: alert.subjectId,
          raised_at: alert.raisedAt,
          cleared_at: null,
          acknowledged_at: null,
          acknowledged_by: null,
        })
        .onConflict((oc) => oc.column('key').where('cleared_at', 'is', null).doNothing())
        .execute();
      const open = await this.#db
        .selectFrom('alerts')
        .selectAll()
        .where('key', '=', alert.key)
        .where('cleared_at', 'is', null)
        .executeTakeFirst();
      if (open) return toAlert(open);
    }
  }

  async clear(key: string, at: string): Promise<boolean> {
    const result = await this.#db
      .updateTable('alerts')
      .set({ cleared_at: at })
      .where('key', '=', key)
      .where('cleared_at', 'is', null)
      .executeTakeFirst();
    return affectedRows(result) > 0;
  }

  /** Newest first; `open` true lists only open alerts, false only cleared ones. */
  async list(options: { open?: boolean; limit?: number } = {}): Promise<Alert[]> {
    let query = this.#db.selectFrom('alerts').selectAll().orderBy('raised_at', 'desc').orderBy('id', 'desc');
    if (options.open === true) query = query.where('cleared_at', 'is', null);
    if (options.open === false) query = query.where('cleared_at', 'is not', null);
    if (options.limit !== undefined) query = query.limit(options.limit);
    const rows = await query.execute();
    return rows.map(toAlert);
  }

  async get(id: string): Promise<Alert | undefined> {
    const row = await this.#db.selectFrom('alerts').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toAlert(row) : undefined;
  }

  /** The first acknowledgement stays: a second operator does not overwrite who saw it first. */
  async acknowledge(id: string, acknowledgement: AlertAcknowledgement): Promise<Alert | undefined> {
    await this.#db
      .updateTable('alerts')
      .set({ acknowledged_at: acknowledgement.at, acknowledged_by: acknowledgement.by })
      .where('id', '=', id)
      .where('acknowledged_at', 'is', null)
      .execute();
    return this.get(id);
  }
}

function toAlert(row: Selectable<AlertsTable>): Alert {
  return {
    id: row.id,
    key: row.key,
    severity: row.severity as AlertSeverity,
    message: row.message,
    subjectType: row.subject_type as Alert['subjectType'],
    subjectId: row.subject_id,
    raisedAt: row.raised_at,
    clearedAt: row.cleared_at,
    acknowledged:
      row.acknowledged_at === null ? null : { at: row.acknowledged_at, by: row.acknowledged_by ?? '' },
  };
}
