import { DatabaseSync } from 'node:sqlite';
import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  SqliteDialect,
  type SqliteDialectConfig,
  SqliteDriver,
} from 'kysely';
import { NodeSqliteDatabase } from './node-sqlite-database.ts';

export interface NodeSqliteOptions {
  /** How long a statement waits for another connection's write lock. */
  busyTimeoutMs?: number;
}

/**
 * Opens the SQLite file with the settings the vault relies on: WAL (readers do
 * not block the writer), synchronous=FULL (an acknowledged commit survives a
 * kill -9 or power loss), foreign keys, and a busy timeout for a second process.
 */
export function openNodeSqlite(file: string, options: NodeSqliteOptions = {}): NodeSqliteDatabase {
  const native = new DatabaseSync(file);
  try {
    native.exec(`PRAGMA busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? 5000)}`);
    native.exec('PRAGMA journal_mode = WAL');
    native.exec('PRAGMA synchronous = FULL');
    native.exec('PRAGMA foreign_keys = ON');
  } catch (error) {
    native.close();
    throw error;
  }
  return new NodeSqliteDatabase(native);
}

/**
 * Kysely's SQLite dialect, with transactions started as BEGIN IMMEDIATE: a
 * deferred transaction that reads and then writes can fail with SQLITE_BUSY
 * when another connection wrote in between; taking the write lock up front
 * makes it wait (busy_timeout) instead.
 */
export class NodeSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;

  constructor(config: SqliteDialectConfig) {
    super(config);
    this.#config = config;
  }

  override createDriver(): Driver {
    return new ImmediateTransactionSqliteDriver(this.#config);
  }
}

class ImmediateTransactionSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}
