import { copyFile, mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { HavenError } from '../errors/index.ts';
import { PRIVATE_DIR_MODE } from '../storage/private-files.ts';
import { runPostgresClient } from './dialect/postgres/index.ts';
import { type StoreLocation, sqliteFile, storeDialectOf } from './open-store.ts';

const sqliteHeader = Buffer.from('SQLite format 3\0', 'latin1');

/**
 * Replaces the state at `location` with a backup made by `Store.backup`.
 * The vault's store must be closed (no process may have the database open).
 * SQLite: the file is copied into place atomically, and the old WAL removed
 * (it belongs to the old database and would be replayed over the new one).
 * PostgreSQL: pg_restore --clean --if-exists in one transaction.
 */
export async function restoreStore(file: string, location: StoreLocation): Promise<void> {
  if (storeDialectOf(location) === 'postgres') {
    await runPostgresClient('pg_restore', location.databaseUrl!, [
      '--clean',
      '--if-exists',
      '--no-owner',
      '--single-transaction',
      '--exit-on-error',
      file,
    ]);
    return;
  }
  await assertSqliteFile(file);
  const target = sqliteFile(location.dataDir);
  const partial = `${target}.restoring`;
  await mkdir(dirname(target), { recursive: true, mode: PRIVATE_DIR_MODE });
  await copyFile(file, partial);
  await fsync(partial);
  await rm(`${target}-wal`, { force: true });
  await rm(`${target}-shm`, { force: true });
  await rename(partial, target);
  await fsync(dirname(target));
}

async function assertSqliteFile(file: string): Promise<void> {
  const head = Buffer.alloc(sqliteHeader.length);
  try {
    const handle = await open(file, 'r');
    try {
      await handle.read(head, 0, head.length, 0);
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw new HavenError('not_found', `backup file '${file}' cannot be read: ${(error as Error).message}`, {
      file,
    });
  }
  if (!head.equals(sqliteHeader)) {
    throw new HavenError('validation_failed', `backup file '${file}' is not a SQLite database`, { file });
  }
}

async function fsync(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
