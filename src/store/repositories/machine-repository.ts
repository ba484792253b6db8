import type { Kysely, Selectable } from 'kysely';
import { isInProgress } from '../../domain/lifecycle.ts';
import type {
  Disk,
  ImportedDomain,
  Machine,
  MachineRuntime,
  MachineState,
  RecoverySettings,
  ReplicationHealth,
  ReplicationSnapshot,
  ServerSettings,
  SourceFence,
} from '../../domain/model.ts';
import { notFound } from '../../errors/index.ts';
import {
  affectedRows,
  fromBooleanColumn,
  fromJsonColumn,
  toBooleanColumn,
  toJsonColumn,
} from '../column-codec.ts';
import { checkedWrite } from '../constraint-violation.ts';
import type { Database, MachinesTable } from '../schema.ts';
import type { MachineFilter, MachineRepository } from '../store.ts';

export class KyselyMachineRepository implements MachineRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(machine: Machine): Promise<void> {
    await checkedWrite('machine', machine.name, () =>
      this.#db
        .insertInto('machines')
        .values({
          id: machine.id,
          created_at: machine.createdAt,
          state: machine.state,
          current_job_id: machine.currentJobId,
          source_fence: machine.sourceFence ? toJsonColumn(machine.sourceFence) : null,
          health: machine.health,
          ...columns(machine),
        })
        .execute(),
    );
  }

  async get(id: string): Promise<Machine | undefined> {
    const row = await this.#db.selectFrom('machines').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toMachine(row);
  }

  async getByName(name: string): Promise<Machine | undefined> {
    const row = await this.#db.selectFrom('machines').selectAll().where('name', '=', name).executeTakeFirst();
    return row && toMachine(row);
  }

  /** `hostId` matches a machine whose primary, recovery or active host it is. */
  async list(filter: MachineFilter = {}): Promise<Machine[]> {
    let query = this.#db.selectFrom('machines').selectAll().orderBy('name');
    if (filter.state !== undefined) query = query.where('state', '=', filter.state);
    const hostId = filter.hostId;
    if (hostId !== undefined) {
      query = query.where((eb) =>
        eb.or([
          eb('primary_host_id', '=', hostId),
          eb('recovery_host_id', '=', hostId),
          eb('active_host_id', '=', hostId),
        ]),
      );
    }
    if (filter.limit !== undefined) query = query.limit(filter.limit);
    if (filter.offset !== undefined) {
      // Both dialects need a LIMIT before OFFSET (-1/ALL means none on SQLite/PostgreSQL).
      if (filter.limit === undefined) query = query.limit(Number.MAX_SAFE_INTEGER);
      query = query.offset(filter.offset);
    }
    const rows = await query.execute();
    return rows.map(toMachine);
  }

  /**
   * Writes every field except `state` and `currentJobId`, which only
   * `transition` changes (a plain update racing a transition must not undo
   * it), and the replication's health, which only `recordReplication` writes.
   */
  async update(machine: Machine): Promise<void> {
    const result = await checkedWrite('machine', machine.name, () =>
      this.#db.updateTable('machines').set(columns(machine)).where('id', '=', machine.id).executeTakeFirst(),
    );
    if (affectedRows(result) === 0) throw notFound('machine', machine.id);
  }

  /**
   * One conditional UPDATE (compare-and-set on `state` alone, as the interface
   * documents): concurrent callers are serialised on the row and the loser
   * finds `state` changed. Entering an in-progress state records `jobId`;
   * entering a stable state clears the current job whatever `jobId` says,
   * because a stable state never has a job running.
   */
  async transition(
    id: string,
    from: MachineState,
    to: MachineState,
    jobId: string | null,
    at: string,
  ): Promise<boolean> {
    const result = await this.#db
      .updateTable('machines')
      .set({ state: to, current_job_id: isInProgress(to) ? jobId : null, updated_at: at })
      .where('id', '=', id)
      .where('state', '=', from)
      .executeTakeFirst();
    return affectedRows(result) === 1;
  }

  async countProtectedDisks(recoveryHostId: string): Promise<number> {
    const rows = await this.#db
      .selectFrom('machines')
      .select('disks')
      .where('recovery_host_id', '=', recoveryHostId)
      .execute();
    return rows.reduce((sum, row) => sum + fromJsonColumn<Disk[]>(row.disks).length, 0);
  }

  async recordReplication(
    id: string,
    snapshot: ReplicationSnapshot | null,
    health: ReplicationHealth,
    seen?: Pick<Machine, 'state' | 'activeHostId' | 'recoveryHostId'>,
  ): Promise<boolean> {
    let query = this.#db
      .updateTable('machines')
      .set({ replication: snapshot === null ? null : toJsonColumn(snapshot), health })
      .where('id', '=', id);
    if (seen) {
      const { recoveryHostId } = seen;
      query = query
        .where('state', '=', seen.state)
        .where('active_host_id', '=', seen.activeHostId)
        .where((eb) =>
          recoveryHostId === null
            ? eb('recovery_host_id', 'is', null)
            : eb('recovery_host_id', '=', recoveryHostId),
        );
    }
    return affectedRows(await query.executeTakeFirst()) === 1;
  }

  async recordSourceFence(id: string, fence: SourceFence | null): Promise<void> {
    await this.#db
      .updateTable('machines')
      .set({ source_fence: fence === null ? null : toJsonColumn(fence) })
      .where('id', '=', id)
      .execute();
  }

  async delete(id: string): Promise<void> {
    await this.#db.deleteFrom('machines').where('id', '=', id).execute();
  }
}

/** What both create and update write; state, the current job, health and the source fence have writers of their own. */
function columns(machine: Machine) {
  return {
    name: machine.name,
    primary_host_id: machine.primaryHostId,
    recovery_host_id: machine.recoveryHostId,
    active_host_id: machine.activeHostId,
    policy_id: machine.policyId,
    group_id: machine.groupId,
    os_family: machine.osFamily,
    disks: toJsonColumn(machine.disks),
    recovery_settings: toJsonColumn(machine.recoverySettings),
    runtime: toJsonColumn(machine.runtime),
    original_exists: toBooleanColumn(machine.originalExists),
    imported_from: machine.importedFrom ? toJsonColumn(machine.importedFrom) : null,
    server: machine.server ? toJsonColumn(machine.server) : null,
    updated_at: machine.updatedAt,
  };
}

function toMachine(row: Selectable<MachinesTable>): Machine {
  return {
    id: row.id,
    name: row.name,
    primaryHostId: row.primary_host_id,
    recoveryHostId: row.recovery_host_id,
    activeHostId: row.active_host_id,
    policyId: row.policy_id,
    groupId: row.group_id,
    osFamily: row.os_family as Machine['osFamily'],
    state: row.state as MachineState,
    health: row.health as ReplicationHealth,
    disks: fromJsonColumn<Disk[]>(row.disks),
    recoverySettings: fromJsonColumn<RecoverySettings>(row.recovery_settings),
    currentJobId: row.current_job_id,
    replication: row.replication === null ? null : fromJsonColumn<ReplicationSnapshot>(row.replication),
    runtime:
      row.runtime === null ? { test: null, failover: null } : fromJsonColumn<MachineRuntime>(row.runtime),
    originalExists: fromBooleanColumn(row.original_exists),
    ...(row.imported_from ? { importedFrom: fromJsonColumn<ImportedDomain>(row.imported_from) } : {}),
    ...(row.server ? { server: fromJsonColumn<ServerSettings>(row.server) } : {}),
    ...(row.source_fence ? { sourceFence: fromJsonColumn<SourceFence>(row.source_fence) } : {}),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
