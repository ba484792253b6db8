import type { Migration, MigrationProvider } from 'kysely';
import { initialMigration } from './0001-initial.ts';
import { replicationFingerprintMigration } from './0002-replication-fingerprint.ts';
import { machineReplicationMigration } from './0003-machine-replication.ts';
import { machineRuntimeMigration } from './0004-machine-runtime.ts';
import { scriptRunsMigration } from './0005-script-runs.ts';
import { recoveryPointSequenceMigration } from './0006-recovery-point-sequence.ts';
import { hostStorageFoldersMigration } from './0007-host-storage-folders.ts';
import { machineImportedFromMigration } from './0008-machine-imported-from.ts';
import { machineSourceFenceMigration } from './0009-machine-source-fence.ts';
import { alertAcknowledgedMigration } from './0010-alert-acknowledged.ts';
import { jobStepOutputMigration } from './0011-job-step-output.ts';
import { replicationHistoryMigration } from './0012-replication-history.ts';
import { accessViewsMigration } from './0013-access-views.ts';
import { drillsMigration } from './0014-drills.ts';
import { viewClosedReasonMigration } from './0015-view-closed-reason.ts';
import { serversMigration } from './0016-servers.ts';
import { serverBmcPasswordsMigration } from './0017-server-bmc-passwords.ts';

/**
 * Every migration, listed explicitly and in order: names are stored in the
 * database, so they must never change once released.
 */
export const migrations: Readonly<Record<string, Migration>> = {
  '0001-initial': initialMigration,
  '0002-replication-fingerprint': replicationFingerprintMigration,
  '0003-machine-replication': machineReplicationMigration,
  '0004-machine-runtime': machineRuntimeMigration,
  '0005-script-runs': scriptRunsMigration,
  '0006-recovery-point-sequence': recoveryPointSequenceMigration,
  '0007-host-storage-folders': hostStorageFoldersMigration,
  '0008-machine-imported-from': machineImportedFromMigration,
  '0009-machine-source-fence': machineSourceFenceMigration,
  '0010-alert-acknowledged': alertAcknowledgedMigration,
  '0011-job-step-output': jobStepOutputMigration,
  '0012-replication-history': replicationHistoryMigration,
  '0013-access-views': accessViewsMigration,
  '0014-drills': drillsMigration,
  '0015-view-closed-reason': viewClosedReasonMigration,
  '0016-servers': serversMigration,
  '0017-server-bmc-passwords': serverBmcPasswordsMigration,
};

export class HavenMigrationProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return { ...migrations };
  }
}
