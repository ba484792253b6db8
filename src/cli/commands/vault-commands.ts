import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensurePortalBuilt, portalBanner } from '../../app/ensure-portal-built.ts';
import { startVault } from '../../app/start-vault.ts';
import { HavenError } from '../../errors/index.ts';
import { openStore, restoreStore, sqliteFile } from '../../store/index.ts';
import { parseDuration } from '../../text/human-units.ts';
import {
  type Command,
  controlPortOption,
  dataDirOption,
  integer,
  positional,
  required,
  str,
} from '../command.ts';

/** Keeps a long-running command alive until SIGINT/SIGTERM, then stops it cleanly. */
export async function runUntilSignal(stop: () => Promise<void>): Promise<number> {
  let stopping = false;
  // The handler stays installed while stopping: a second signal (Ctrl-C twice, a service manager's
  // SIGTERM after it) would otherwise end the process mid-stop, with machines and files half closed.
  const onSignal = (resolve: () => void) => () => {
    if (stopping) return;
    stopping = true;
    resolve();
  };
  let handler: () => void = () => {};
  await new Promise<void>((resolve) => {
    handler = onSignal(resolve);
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
  });
  try {
    await stop();
  } finally {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  }
  return 0;
}

export const vaultCommands: Command[] = [
  {
    name: 'vault',
    summary:
      'Run a vault (REST API, portal, job engine, control channel; builds the portal when its sources changed); PostgreSQL with HAVEN_DATABASE_URL. The REST API serves HTTPS beyond loopback (its own certificate, or a self-signed one whose fingerprint it prints); on loopback plain HTTP unless --tls',
    examples: [
      'haven vault --data /var/lib/haven',
      'haven vault --host 0.0.0.0 --tls-cert /etc/haven/api.crt --tls-key /etc/haven/api.key',
    ],
    options: {
      data: {
        type: 'string',
        value: 'DIR',
        description: "the vault's state, admin token and keys (default .haven)",
      },
      host: {
        type: 'string',
        value: 'ADDRESS',
        description: 'address the REST API listens on (default 127.0.0.1)',
      },
      port: { type: 'string', value: 'PORT', description: 'port of the REST API (default 8440)' },
      'tls-cert': {
        type: 'string',
        value: 'FILE',
        description: "the REST API's certificate (PEM), with --tls-key",
      },
      'tls-key': {
        type: 'string',
        value: 'FILE',
        description: "the REST API's private key (PEM), with --tls-cert",
      },
      tls: { type: 'boolean', description: 'serve HTTPS on loopback too (self-signed unless --tls-cert)' },
      'control-host': {
        type: 'string',
        value: 'ADDRESS',
        description: 'address hosts connect to (default 127.0.0.1)',
      },
      'control-port': {
        type: 'string',
        value: 'PORT',
        description: 'port of the control channel (default: the saved one, else from 8441)',
      },
      'heartbeat-interval': {
        type: 'string',
        value: 'DURATION',
        description: 'how often hosts report (e.g. 5s)',
      },
      'app-consistency-hook': {
        type: 'string',
        value: 'FILE',
        description: 'run as `FILE freeze|thaw` around app-consistent points',
      },
      'scripts-dir': {
        type: 'string',
        value: 'DIR',
        description: 'the only folder plan scripts run from (default DATA/scripts)',
      },
    },
    run: async (args) => {
      const heartbeat = str(args, 'heartbeat-interval');
      const hook = str(args, 'app-consistency-hook');
      // Plans run only the executables an admin put here (default DATA/scripts).
      const scriptsDir = str(args, 'scripts-dir');
      const cert = str(args, 'tls-cert');
      const key = str(args, 'tls-key');
      if ((cert === undefined) !== (key === undefined)) {
        throw new HavenError('bad_request', '--tls-cert and --tls-key go together', { field: 'tls-cert' });
      }
      // Before the vault answers: its URL then serves the portal of this checkout, not a 503 or an old build.
      const portal = await ensurePortalBuilt((line) => process.stderr.write(`${line}\n`));
      const vault = await startVault({
        ...(cert !== undefined && key !== undefined
          ? { apiTls: { certPem: await readFile(cert, 'utf8'), keyPem: await readFile(key, 'utf8') } }
          : args.values.tls === true
            ? { apiTls: 'self-signed' as const }
            : {}),
        // Run as `<hook> freeze|thaw` around app-consistent points (policy frequency).
        ...(hook ? { appConsistencyHook: hook } : {}),
        ...(scriptsDir ? { scriptsDir } : {}),
        ...(heartbeat ? { heartbeatIntervalMs: parseDuration(heartbeat, 'heartbeat-interval') * 1000 } : {}),
        dataDir: dataDirOption(args, '.haven'),
        host: str(args, 'host') ?? '127.0.0.1',
        port: integer(str(args, 'port'), 'port') ?? 8440,
        controlHost: str(args, 'control-host') ?? '127.0.0.1',
        ...controlPortOption(args),
        firstControlPort: 8441,
        ...(process.env.HAVEN_DATABASE_URL ? { databaseUrl: process.env.HAVEN_DATABASE_URL } : {}),
      });
      process.stdout.write(
        `${JSON.stringify({ url: vault.url, apiFingerprint: vault.apiFingerprint, controlAddress: vault.controlAddress })}\n`,
      );
      process.stdout.write(`Haven vault ${vault.context.version} at ${vault.url}\n`);
      process.stdout.write(`Portal: ${portalBanner(portal, vault.url)}\n`);
      if (vault.apiFingerprint) {
        process.stdout.write(
          `REST API certificate fingerprint ${vault.apiFingerprint} (haven --fingerprint, haven host --fingerprint)\n`,
        );
      }
      process.stdout.write(
        `Control channel for hosts at ${vault.controlAddress} (fingerprint ${vault.fingerprint})\n`,
      );
      if (vault.adminToken)
        process.stdout.write(
          `Admin token written to ${join(dataDirOption(args, '.haven'), 'admin.token')}\n`,
        );
      return runUntilSignal(vault.stop);
    },
  },
  {
    name: 'vault backup',
    summary: 'Consistent online backup of the vault state (SQLite backup API, pg_dump for PostgreSQL)',
    examples: ['haven vault backup --data /var/lib/haven --out /backup/haven-$(date +%F).db'],
    options: {
      data: { type: 'string', value: 'DIR', description: "the vault's data folder (default .haven)" },
      out: { type: 'string', value: 'FILE', description: 'where to write the backup' },
    },
    run: async (args) => {
      const out = required(args, 'out');
      const store = await openStore({
        dataDir: dataDirOption(args, '.haven'),
        ...(process.env.HAVEN_DATABASE_URL ? { databaseUrl: process.env.HAVEN_DATABASE_URL } : {}),
      });
      try {
        await store.backup(out);
      } finally {
        await store.close();
      }
      process.stdout.write(`Backup written to ${out}\n`);
      return 0;
    },
  },
  {
    name: 'vault restore',
    summary:
      'Restore a vault from a backup into --data DIR (same identity: hosts reconnect without re-enrolling)',
    usage: 'FILE',
    examples: ['haven vault restore /backup/haven-2026-12-01.db --data /var/lib/haven'],
    options: {
      data: { type: 'string', value: 'DIR', description: 'the data folder to restore into (default .haven)' },
      force: {
        type: 'boolean',
        description: 'replace the vault state already there (stop that vault first)',
      },
    },
    run: async (args) => {
      const file = positional(args, 0, 'backup file');
      const dataDir = dataDirOption(args, '.haven');
      const databaseUrl = process.env.HAVEN_DATABASE_URL;
      if (!databaseUrl && existsSync(sqliteFile(dataDir)) && args.values.force !== true) {
        throw new HavenError(
          'conflict',
          `${sqliteFile(dataDir)} already holds a vault; restoring would replace it. Stop that vault and pass --force, or restore into an empty --data directory`,
        );
      }
      await restoreStore(file, { dataDir, ...(databaseUrl ? { databaseUrl } : {}) });
      process.stdout.write(
        `Vault state restored into ${process.env.HAVEN_DATABASE_URL ? 'the PostgreSQL database' : dataDir}; start it with 'haven vault --data ${dataDir}' at the same address\n`,
      );
      return 0;
    },
  },
];
