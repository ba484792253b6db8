import type { Kysely, Migration } from 'kysely';

/**
 * Hosts pin each other's replication certificates (SPEC §6: replication
 * data is encrypted in transit, host to host). The vault learns each host's
 * fingerprint from its inventory and hands it to the peers that replicate
 * with it.
 */
export const replicationFingerprintMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('hosts').addColumn('replication_fingerprint', 'text').execute();
  },
};
