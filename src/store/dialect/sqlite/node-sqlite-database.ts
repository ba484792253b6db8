import type { DatabaseSync, SQLInputValue } from 'node:sqlite';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

/**
 * Makes node:sqlite's `DatabaseSync` fit the better-sqlite3-shaped interface
 * Kysely's `SqliteDialect` expects: positional parameters are spread, and a
 * statement is a reader when it returns columns (SELECT, or ... RETURNING).
 */
export class NodeSqliteDatabase implements SqliteDatabase {
  readonly native: DatabaseSync;

  constructor(native: DatabaseSync) {
    this.native = native;
  }

  prepare(sql: string): SqliteStatement {
    const statement = this.native.prepare(sql);
    return {
      reader: statement.columns().length > 0,
      all: (parameters) => statement.all(...toInputs(parameters)),
      run: (parameters) => statement.run(...toInputs(parameters)),
      iterate: (parameters) => statement.iterate(...toInputs(parameters)),
    };
  }

  close(): void {
    if (this.native.isOpen) this.native.close();
  }
}

function toInputs(parameters: ReadonlyArray<unknown>): SQLInputValue[] {
  return parameters.map((value) => {
    // node:sqlite refuses booleans; SQLite itself has none.
    if (typeof value === 'boolean') return value ? 1 : 0;
    return value as SQLInputValue;
  });
}
