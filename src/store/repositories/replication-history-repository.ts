import type { Kysely, Selectable } from 'kysely';
import {
  bucketStart,
  mergeFigure,
  oldestKept,
  REPLICATION_TIERS,
  type ReplicationFigure,
  type ReplicationResolution,
  type ReplicationSample,
} from '../../domain/replication-history.ts';
import { fromBigIntColumn } from '../column-codec.ts';
import type { Database, ReplicationSamplesTable } from '../schema.ts';
import type { ReplicationHistoryRepository } from '../store.ts';

export class KyselyReplicationHistoryRepository implements ReplicationHistoryRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async record(machineId: string, figure: ReplicationFigure): Promise<void> {
    await this.#db.transaction().execute(async (trx) => {
      for (const tier of REPLICATION_TIERS) {
        const at = bucketStart(figure.at, tier.resolutionSeconds);
        const row = await trx
          .selectFrom('replication_samples')
          .selectAll()
          .where('machine_id', '=', machineId)
          .where('resolution_seconds', '=', tier.resolutionSeconds)
          .where('bucket_at', '=', at)
          .executeTakeFirst();
        const merged = mergeFigure(row && toSample(row), figure, tier.resolutionSeconds);
        const values = {
          samples: merged.samples,
          throughput: merged.throughputBytesPerSec,
          pending_bytes: Math.round(merged.pendingBytes),
          rpo_seconds: merged.rpoSeconds,
        };
        if (row) {
          await trx
            .updateTable('replication_samples')
            .set(values)
            .where('machine_id', '=', machineId)
            .where('resolution_seconds', '=', tier.resolutionSeconds)
            .where('bucket_at', '=', at)
            .execute();
        } else {
          await trx
            .insertInto('replication_samples')
            .values({
              machine_id: machineId,
              resolution_seconds: tier.resolutionSeconds,
              bucket_at: at,
              ...values,
            })
            .execute();
        }
        await trx
          .deleteFrom('replication_samples')
          .where('machine_id', '=', machineId)
          .where('resolution_seconds', '=', tier.resolutionSeconds)
          .where('bucket_at', '<', oldestKept(figure.at, tier))
          .execute();
      }
    });
  }

  async list(
    machineId: string,
    resolutionSeconds: ReplicationResolution,
    since: string,
  ): Promise<ReplicationSample[]> {
    const rows = await this.#db
      .selectFrom('replication_samples')
      .selectAll()
      .where('machine_id', '=', machineId)
      .where('resolution_seconds', '=', resolutionSeconds)
      .where('bucket_at', '>=', bucketStart(since, resolutionSeconds))
      .orderBy('bucket_at')
      .execute();
    return rows.map(toSample);
  }
}

function toSample(row: Selectable<ReplicationSamplesTable>): ReplicationSample {
  return {
    at: row.bucket_at,
    resolutionSeconds: row.resolution_seconds as ReplicationResolution,
    samples: row.samples,
    throughputBytesPerSec: row.throughput,
    pendingBytes: fromBigIntColumn(row.pending_bytes),
    rpoSeconds: row.rpo_seconds,
  };
}
