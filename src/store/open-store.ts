import { closeSync, mkdirSync, openSync } from 'node:fs';
import { chmod, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { backup as sqliteBackup } from 'node:sqlite';
import { Kysely, Migrator } from 'kysely';
import { HavenError } from '../errors/index.ts';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../storage/private-files.ts';
import { createPostgresDialect, isPostgresUrl, runPostgresClient } from './dialect/postgres/index.ts';
import { NodeSqliteDialect, openNodeSqlite } from './dialect/sqlite/index.ts';
import { HavenMigrationProvider } from './migrations/migration-provider.ts';
import { KyselyAccessViewRepository } from './repositories/access-view-repository.ts';
import { KyselyAlertRepository } from './repositories/alert-repository.ts';
import { KyselyDrillRunRepository, KyselyDrillScheduleRepository } from './repositories/drill-repository.ts';
import { KyselyEnrolmentRepository } from './repositories/enrolment-repository.ts';
import { KyselyHostRepository } from './repositories/host-repository.ts';
import { KyselyJobRepository } from './repositories/job-repository.ts';
import { KyselyMachineRepository } from './repositories/machine-repository.ts';
import { KyselyPlanRepository } from './repositories/plan-repository.ts';
import { KyselyPolicyRepository } from './repositories/policy-repository.ts';
import { KyselyRecoveryPointRepository } from './repositories/recovery-point-repository.ts';
import { KyselyReplicationHistoryRepository } from './repositories/replication-history-repository.ts';
import { KyselyScriptRunRepository } from './repositories/script-run-repository.ts';
import { KyselyServerBmcPasswordRepository } from './repositories/server-bmc-password-repository.ts';
import { KyselyServerEnrolmentRepository } from './repositories/server-enrolment-repository.ts';
import { KyselySettingsRepository } from './repositories/settings-repository.ts';
import { KyselySiteRepository } from './repositories/site-repository.ts';
import { KyselyTokenRepository } from './repositories/token-repository.ts';
import type { Database } from './schema.ts';
import type { Store } from './store.ts';

export interface StoreLocation {
  /** The vault's data directory; the SQLite database is `<dataDir>/haven.db`. */
  dataDir: string;
  /** `postgres://` or `postgresql://` selects PostgreSQL (HAVEN_DATABASE_URL); unset means SQLite. */
  databaseUrl?: string;
}

export const sqliteFileName = 'haven.db';

/** Where the SQLite database of a data directory lives. */
export function sqliteFile(dataDir: string): string {
  return join(dataDir, sqliteFileName);
}

/** Which database a location selects; rejects URLs Haven cannot use. */
export function storeDialectOf(location: StoreLocation): Store['dialect'] {
  const url = location.databaseUrl;
  if (url === undefined || url === '') return 'sqlite';
  if (isPostgresUrl(url)) return 'postgres';
  throw new HavenError(
    'validation_failed',
    `database URL '${url.replace(/:[^:@/]*@/, ':***@')}' is not supported: use postgres:// or postgresql://, or leave it unset for SQLite`,
    { field: 'databaseUrl' },
  );
}

/**
 * Opens the vault's state database and brings its schema up to date (the
 * migrations are idempotent: reopening an up-to-date database changes nothing).
 */
export async function openStore(location: StoreLocation): Promise<Store> {
  const dialect = storeDialectOf(location);
  const store = dialect === 'postgres' ? openPostgres(location.databaseUrl!) : openSqlite(location.dataDir);
  try {
    await migrate(store.db);
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}

async function migrate(db: Kysely<Database>): Promise<void> {
  const migrator = new Migrator({ db, provider: new HavenMigrationProvider() });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new HavenError('internal', `database migration '${failed}' failed: ${(error as Error).message}`, {
      migration: failed,
    });
  }
}

function openSqlite(dataDir: string): KyselyStore {
  mkdirSync(dataDir, { recursive: true, mode: PRIVATE_DIR_MODE });
  // The database holds the vault's TLS key and host credential hashes: SQLite gives its -wal and -shm files the same mode.
  closeSync(openSync(sqliteFile(dataDir), 'a', PRIVATE_FILE_MODE));
  const database = openNodeSqlite(sqliteFile(dataDir));
  const db = new Kysely<Database>({ dialect: new NodeSqliteDialect({ database }) });
  return new KyselyStore('sqlite', db, async (file) => {
    // Hold Kysely's single connection so no statement interleaves with the copy.
    await db.connection().execute(async () => {
      await sqliteBackup(database.native, file);
    });
  });
}

function openPostgres(url: string): KyselyStore {
  const { dialect } = createPostgresDialect(url);
  const db = new Kysely<Database>({ dialect });
  // pg_dump takes its own snapshot: the copy is consistent while the vault runs.
  return new KyselyStore('postgres', db, (file) =>
    runPostgresClient('pg_dump', url, ['--format=custom', '--no-owner', `--file=${file}`]),
  );
}

class KyselyStore implements Store {
  readonly dialect: Store['dialect'];
  readonly db: Kysely<Database>;
  readonly sites: KyselySiteRepository;
  readonly hosts: KyselyHostRepository;
  readonly enrolments: KyselyEnrolmentRepository;
  readonly serverEnrolments: KyselyServerEnrolmentRepository;
  readonly serverBmcPasswords: KyselyServerBmcPasswordRepository;
  readonly tokens: KyselyTokenRepository;
  readonly policies: KyselyPolicyRepository;
  readonly machines: KyselyMachineRepository;
  readonly recoveryPoints: KyselyRecoveryPointRepository;
  readonly plans: KyselyPlanRepository;
  readonly jobs: KyselyJobRepository;
  readonly alerts: KyselyAlertRepository;
  readonly settings: KyselySettingsRepository;
  readonly scriptRuns: KyselyScriptRunRepository;
  readonly drillSchedules: KyselyDrillScheduleRepository;
  readonly drillRuns: KyselyDrillRunRepository;
  readonly accessViews: KyselyAccessViewRepository;
  readonly replicationHistory: KyselyReplicationHistoryRepository;
  readonly #copyTo: (file: string) => Promise<void>;
  #closed = false;

  constructor(dialect: Store['dialect'], db: Kysely<Database>, copyTo: (file: string) => Promise<void>) {
    this.dialect = dialect;
    this.db = db;
    this.#copyTo = copyTo;
    this.sites = new KyselySiteRepository(db);
    this.hosts = new KyselyHostRepository(db);
    this.enrolments = new KyselyEnrolmentRepository(db);
    this.serverEnrolments = new KyselyServerEnrolmentRepository(db);
    this.serverBmcPasswords = new KyselyServerBmcPasswordRepository(db);
    this.tokens = new KyselyTokenRepository(db);
    this.policies = new KyselyPolicyRepository(db);
    this.machines = new KyselyMachineRepository(db);
    this.recoveryPoints = new KyselyRecoveryPointRepository(db);
    this.plans = new KyselyPlanRepository(db);
    this.jobs = new KyselyJobRepository(db, dialect);
    this.alerts = new KyselyAlertRepository(db);
    this.settings = new KyselySettingsRepository(db);
    this.scriptRuns = new KyselyScriptRunRepository(db);
    this.drillSchedules = new KyselyDrillScheduleRepository(db);
    this.drillRuns = new KyselyDrillRunRepository(db);
    this.accessViews = new KyselyAccessViewRepository(db);
    this.replicationHistory = new KyselyReplicationHistoryRepository(db);
  }

  /** Writes to a temporary name first, so `file` is either the old or a complete new backup. */
  async backup(file: string): Promise<void> {
    const partial = `${file}.partial`;
    await rm(partial, { force: true });
    try {
      await this.#copyTo(partial);
      // A backup is the whole vault state, secrets included (pg_dump's file follows its own umask).
      await chmod(partial, PRIVATE_FILE_MODE);
      await rename(partial, file);
    } catch (error) {
      await rm(partial, { force: true });
      throw error;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.db.destroy();
  }
}
