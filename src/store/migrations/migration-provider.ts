import type { Migration, MigrationProvider } from 'kysely';
import { initialMigration } from './0001-initial.ts';
import { replicationFingerprintMigration } from './0002-replication-fingerprint.ts';

/**
 * Every migration, listed explicitly and in order: names are stored in the
 * database, so they must never change once released.
 */
export const migrations: Readonly<Record<string, Migration>> = {
  '0001-initial': initialMigration,
  '0002-replication-fingerprint': replicationFingerprintMigration,
};

export class HavenMigrationProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return { ...migrations };
  }
}
