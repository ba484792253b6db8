import type { Kysely, Selectable } from 'kysely';
import {
  type DrillCadence,
  type DrillCheck,
  type DrillChecks,
  type DrillConflictAction,
  type DrillMachineResult,
  type DrillPointChoice,
  type DrillRun,
  type DrillSchedule,
  type DrillState,
  type DrillTarget,
  drillPassed,
} from '../../domain/drill.ts';
import { notFound } from '../../errors/index.ts';
import {
  affectedRows,
  fromBooleanColumn,
  fromJsonColumn,
  toBooleanColumn,
  toJsonColumn,
} from '../column-codec.ts';
import { checkedWrite } from '../constraint-violation.ts';
import type { Database, DrillRunsTable, DrillSchedulesTable } from '../schema.ts';
import type {
  DrillRunFilter,
  DrillRunRepository,
  DrillScheduleRepository,
  MachineProofRuns,
} from '../store.ts';

function targetColumns(target: DrillTarget) {
  return target.kind === 'machine'
    ? { target_kind: 'machine', target_id: target.machineId }
    : { target_kind: 'plan', target_id: target.planId };
}

function toTarget(kind: string, id: string): DrillTarget {
  return kind === 'plan' ? { kind: 'plan', planId: id } : { kind: 'machine', machineId: id };
}

export class KyselyDrillScheduleRepository implements DrillScheduleRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(schedule: DrillSchedule): Promise<void> {
    await checkedWrite('drill schedule', schedule.name, () =>
      this.#db
        .insertInto('drill_schedules')
        .values({
          id: schedule.id,
          created_by: schedule.createdBy,
          created_at: schedule.createdAt,
          ...scheduleColumns(schedule),
        })
        .execute(),
    );
  }

  async get(id: string): Promise<DrillSchedule | undefined> {
    const row = await this.#db
      .selectFrom('drill_schedules')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toSchedule(row);
  }

  async getByName(name: string): Promise<DrillSchedule | undefined> {
    const row = await this.#db
      .selectFrom('drill_schedules')
      .selectAll()
      .where('name', '=', name)
      .executeTakeFirst();
    return row && toSchedule(row);
  }

  async list(filter: { target?: DrillTarget } = {}): Promise<DrillSchedule[]> {
    let query = this.#db.selectFrom('drill_schedules').selectAll();
    if (filter.target) {
      const { target_kind, target_id } = targetColumns(filter.target);
      query = query.where('target_kind', '=', target_kind).where('target_id', '=', target_id);
    }
    return (await query.orderBy('name').execute()).map(toSchedule);
  }

  async update(schedule: DrillSchedule): Promise<void> {
    const result = await checkedWrite('drill schedule', schedule.name, () =>
      this.#db
        .updateTable('drill_schedules')
        .set(scheduleColumns(schedule))
        .where('id', '=', schedule.id)
        .executeTakeFirst(),
    );
    if (affectedRows(result) === 0) throw notFound('drill schedule', schedule.id);
  }

  async delete(id: string): Promise<void> {
    await this.#db.deleteFrom('drill_schedules').where('id', '=', id).execute();
  }

  async due(now: string): Promise<DrillSchedule[]> {
    const rows = await this.#db
      .selectFrom('drill_schedules')
      .selectAll()
      .where('enabled', '=', toBooleanColumn(true))
      .where('next_run_at', 'is not', null)
      .where('next_run_at', '<=', now)
      .orderBy('next_run_at')
      .orderBy('name')
      .execute();
    return rows.map(toSchedule);
  }

  async claimRun(
    id: string,
    expectedNextRunAt: string,
    next: { nextRunAt: string | null; lastRunAt: string },
  ): Promise<boolean> {
    const result = await this.#db
      .updateTable('drill_schedules')
      .set({ next_run_at: next.nextRunAt, last_run_at: next.lastRunAt })
      .where('id', '=', id)
      .where('next_run_at', '=', expectedNextRunAt)
      .executeTakeFirst();
    return affectedRows(result) === 1;
  }
}

function scheduleColumns(s: DrillSchedule) {
  return {
    name: s.name,
    ...targetColumns(s.target),
    cadence: toJsonColumn(s.cadence),
    point_choice: s.point,
    test_network: s.testNetwork,
    max_concurrent_per_host: s.maxConcurrentPerHost,
    time_limit_seconds: s.timeLimitSeconds,
    checks: toJsonColumn(s.checks),
    on_conflict: s.onConflict,
    enabled: toBooleanColumn(s.enabled),
    next_run_at: s.nextRunAt,
    last_run_at: s.lastRunAt,
    updated_at: s.updatedAt,
  };
}

function toSchedule(row: Selectable<DrillSchedulesTable>): DrillSchedule {
  return {
    id: row.id,
    name: row.name,
    target: toTarget(row.target_kind, row.target_id),
    cadence: fromJsonColumn<DrillCadence>(row.cadence),
    point: row.point_choice as DrillPointChoice,
    testNetwork: row.test_network,
    maxConcurrentPerHost: row.max_concurrent_per_host,
    timeLimitSeconds: row.time_limit_seconds,
    checks: fromJsonColumn<DrillChecks>(row.checks),
    onConflict: row.on_conflict as DrillConflictAction,
    enabled: fromBooleanColumn(row.enabled),
    nextRunAt: row.next_run_at,
    lastRunAt: row.last_run_at,
    createdBy: row.created_by,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export class KyselyDrillRunRepository implements DrillRunRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(run: DrillRun): Promise<void> {
    await this.#db.transaction().execute(async (tx) => {
      await tx
        .insertInto('drill_runs')
        .values({ id: run.id, created_by: run.createdBy, created_at: run.createdAt, ...runColumns(run) })
        .execute();
      await writeMachines(tx, run);
    });
  }

  async get(id: string): Promise<DrillRun | undefined> {
    const row = await this.#db.selectFrom('drill_runs').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toRun(row);
  }

  async getByJob(jobId: string): Promise<DrillRun | undefined> {
    const row = await this.#db
      .selectFrom('drill_runs')
      .selectAll()
      .where('job_id', '=', jobId)
      .executeTakeFirst();
    return row && toRun(row);
  }

  async list(filter: DrillRunFilter = {}): Promise<DrillRun[]> {
    let query = this.#db.selectFrom('drill_runs').selectAll('drill_runs');
    if (filter.target) {
      const { target_kind, target_id } = targetColumns(filter.target);
      query = query.where('target_kind', '=', target_kind).where('target_id', '=', target_id);
    }
    if (filter.machineId !== undefined) {
      const machineId = filter.machineId;
      query = query.where((eb) =>
        eb.exists(
          eb
            .selectFrom('drill_run_machines')
            .select('drill_run_machines.run_id')
            .whereRef('drill_run_machines.run_id', '=', 'drill_runs.id')
            .where('drill_run_machines.machine_id', '=', machineId),
        ),
      );
    }
    if (filter.scheduleId !== undefined) query = query.where('schedule_id', '=', filter.scheduleId);
    if (filter.states && filter.states.length > 0) query = query.where('state', 'in', filter.states);
    const rows = await query
      .orderBy('drill_runs.created_at', 'desc')
      .orderBy('drill_runs.id', 'desc')
      .limit(filter.limit ?? 100)
      .execute();
    return rows.map(toRun);
  }

  async update(run: DrillRun): Promise<void> {
    await this.#db.transaction().execute(async (tx) => {
      const result = await tx
        .updateTable('drill_runs')
        .set(runColumns(run))
        .where('id', '=', run.id)
        .executeTakeFirst();
      if (affectedRows(result) === 0) throw notFound('drill', run.id);
      await writeMachines(tx, run);
    });
  }

  async lastProven(machineId: string): Promise<DrillRun | undefined> {
    const row = await this.#db
      .selectFrom('drill_run_machines')
      .innerJoin('drill_runs', 'drill_runs.id', 'drill_run_machines.run_id')
      .selectAll('drill_runs')
      .where('drill_run_machines.machine_id', '=', machineId)
      .where('drill_run_machines.passed', '=', toBooleanColumn(true))
      .orderBy('drill_run_machines.ended_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row && toRun(row);
  }

  async lastPassed(target: DrillTarget): Promise<DrillRun | undefined> {
    const { target_kind, target_id } = targetColumns(target);
    const row = await this.#db
      .selectFrom('drill_runs')
      .selectAll()
      .where('target_kind', '=', target_kind)
      .where('target_id', '=', target_id)
      .where('state', '=', 'passed')
      .orderBy('ended_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row && toRun(row);
  }

  async machineProofRuns(): Promise<MachineProofRuns[]> {
    const proven = await this.#db
      .selectFrom('drill_run_machines as m')
      .innerJoin('drill_runs', 'drill_runs.id', 'm.run_id')
      .select('m.machine_id')
      .selectAll('drill_runs')
      .where('m.passed', '=', toBooleanColumn(true))
      .where('m.ended_at', '=', (eb) =>
        eb
          .selectFrom('drill_run_machines as p')
          .select((p) => p.fn.max('p.ended_at').as('ended_at'))
          .whereRef('p.machine_id', '=', 'm.machine_id')
          .where('p.passed', '=', toBooleanColumn(true)),
      )
      .execute();
    const newest = await this.#db
      .selectFrom('drill_run_machines as m')
      .innerJoin('drill_runs', 'drill_runs.id', 'm.run_id')
      .select('m.machine_id')
      .selectAll('drill_runs')
      .where('drill_runs.created_at', '=', (eb) =>
        eb
          .selectFrom('drill_run_machines as n')
          .innerJoin('drill_runs as r', 'r.id', 'n.run_id')
          .select((n) => n.fn.max('r.created_at').as('created_at'))
          .whereRef('n.machine_id', '=', 'm.machine_id'),
      )
      .orderBy('drill_runs.id', 'desc')
      .execute();
    // Two runs of one machine at the same instant: either is its newest; the first one read is kept.
    const provenBy = new Map<string, DrillRun>();
    for (const row of proven) if (!provenBy.has(row.machine_id)) provenBy.set(row.machine_id, toRun(row));
    const answer = new Map<string, MachineProofRuns>();
    for (const row of newest) {
      if (answer.has(row.machine_id)) continue;
      answer.set(row.machine_id, {
        machineId: row.machine_id,
        lastProven: provenBy.get(row.machine_id),
        newest: toRun(row),
      });
    }
    return [...answer.values()];
  }
}

/** A machine counts as proven by a run that ended without being interrupted or cancelled and whose checks for it passed. */
function machineProven(run: DrillRun, machine: DrillMachineResult): boolean {
  return (
    (run.state === 'passed' || run.state === 'failed') && run.endedAt !== null && drillPassed(machine.checks)
  );
}

async function writeMachines(db: Kysely<Database>, run: DrillRun): Promise<void> {
  await db.deleteFrom('drill_run_machines').where('run_id', '=', run.id).execute();
  if (run.machines.length === 0) return;
  await db
    .insertInto('drill_run_machines')
    .values(
      run.machines.map((m) => ({
        run_id: run.id,
        machine_id: m.machineId,
        passed: toBooleanColumn(machineProven(run, m)),
        ended_at: run.endedAt,
      })),
    )
    .execute();
}

function runColumns(run: DrillRun) {
  return {
    schedule_id: run.scheduleId,
    ...targetColumns(run.target),
    target_name: run.targetName,
    job_id: run.jobId,
    state: run.state,
    reason: run.reason,
    machines: toJsonColumn(run.machines),
    rto_seconds: run.rtoSeconds,
    checks: toJsonColumn(run.checks),
    started_at: run.startedAt,
    ended_at: run.endedAt,
  };
}

function toRun(row: Selectable<DrillRunsTable>): DrillRun {
  return {
    id: row.id,
    scheduleId: row.schedule_id,
    target: toTarget(row.target_kind, row.target_id),
    targetName: row.target_name,
    jobId: row.job_id,
    state: row.state as DrillState,
    reason: row.reason,
    machines: fromJsonColumn<DrillMachineResult[]>(row.machines),
    rtoSeconds: row.rto_seconds === null ? null : Number(row.rto_seconds),
    checks: fromJsonColumn<DrillCheck[]>(row.checks),
    createdBy: row.created_by,
    createdAt: row.created_at,
    startedAt: row.started_at,
    endedAt: row.ended_at,
  };
}
