import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { defineJob } from '../../job-engine/index.ts';
import { PRIVATE_DIR_MODE } from '../../storage/private-files.ts';
import { verifyBackup } from '../backup/verify-backup.ts';
import type { VaultContext } from '../vault-context.ts';
import type { VaultJobDefinition } from './job-inputs.ts';

/**
 * Online backup of the vault's state (seed 004: back the configuration
 * server up regularly). The backup holds the vault identity too, so a vault
 * restored from it is the same vault to its hosts.
 */
export function vaultBackupJob(vault: () => VaultContext): VaultJobDefinition<'vault-backup'> {
  return defineJob({
    kind: 'vault-backup',
    steps: (input) => [
      {
        name: 'write',
        title: 'Write a consistent copy of the vault state',
        retrySafe: true,
        run: async (ctx) => {
          const { file } = input;
          await mkdir(dirname(file), { recursive: true, mode: PRIVATE_DIR_MODE });
          ctx.progress(10, `Writing ${file}`);
          await vault().store.backup(file);
          const { size } = await stat(file);
          await ctx.output({ file, bytes: size });
        },
      },
      {
        name: 'verify',
        title: 'Verify the backup',
        retrySafe: true,
        run: async (ctx) => {
          const summary = await verifyBackup(input.file, vault().store.dialect);
          ctx.progress(
            100,
            `Backup holds ${summary.hosts} host(s), ${summary.machines} machine(s), ${summary.jobs} job(s)`,
          );
          await ctx.output({ verified: summary });
        },
      },
    ],
  });
}
