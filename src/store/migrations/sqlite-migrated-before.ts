import { Kysely, type Migration, Migrator } from 'kysely';
import { NodeSqliteDialect, openNodeSqlite } from '../dialect/sqlite/index.ts';
import { sqliteFile } from '../open-store.ts';
import type { Database } from '../schema.ts';
import { migrations } from './migration-provider.ts';

/** A SQLite state database in dataDir migrated up to (not including) `name`: what a migration's test writes old rows into. */
export async function sqliteMigratedBefore(dataDir: string, name: string): Promise<Kysely<Database>> {
  const before: Record<string, Migration> = Object.fromEntries(
    Object.entries(migrations).filter(([n]) => n < name),
  );
  const db = new Kysely<Database>({
    dialect: new NodeSqliteDialect({ database: openNodeSqlite(sqliteFile(dataDir)) }),
  });
  const migrated = await new Migrator({
    db,
    provider: { getMigrations: async () => before },
  }).migrateToLatest();
  if (migrated.error !== undefined) throw migrated.error;
  return db;
}
