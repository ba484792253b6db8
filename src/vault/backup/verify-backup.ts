import { execFile } from 'node:child_process';
import { DatabaseSync } from 'node:sqlite';
import { promisify } from 'node:util';
import { HavenError } from '../../errors/index.ts';
import { findPostgresBinary } from '../../store/dialect/postgres/index.ts';

const run = promisify(execFile);

export interface BackupSummary {
  /** Row counts where the format allows reading them without restoring (SQLite). */
  hosts: number | null;
  machines: number | null;
  jobs: number | null;
  /** Tables the backup holds. */
  tables: string[];
}

const REQUIRED = ['hosts', 'machines', 'jobs', 'job_steps', 'settings', 'api_tokens'];

/**
 * Opens a backup read-only and checks it holds the vault's tables (and, for
 * SQLite, that it passes SQLite's own integrity check): a backup that
 * cannot be restored is worse than none, because it is trusted.
 */
export async function verifyBackup(file: string, dialect: 'sqlite' | 'postgres'): Promise<BackupSummary> {
  let summary: BackupSummary;
  if (dialect === 'sqlite') {
    const db = new DatabaseSync(file, { readOnly: true });
    try {
      const check = db.prepare('PRAGMA integrity_check').get() as { integrity_check: string };
      if (check.integrity_check !== 'ok') {
        throw new HavenError(
          'internal',
          `Backup ${file} fails SQLite's integrity check: ${check.integrity_check}`,
        );
      }
      const tables = (
        db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]
      ).map((r) => r.name);
      const count = (table: string) =>
        tables.includes(table)
          ? Number((db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n)
          : null;
      summary = { hosts: count('hosts'), machines: count('machines'), jobs: count('jobs'), tables };
    } finally {
      db.close();
    }
  } else {
    const { stdout } = await run(findPostgresBinary('pg_restore'), ['--list', file]);
    const tables = [...stdout.matchAll(/ TABLE DATA \S+ (\S+) /g)].map((m) => m[1]!);
    summary = { hosts: null, machines: null, jobs: null, tables };
  }
  const missing = REQUIRED.filter((t) => !summary.tables.includes(t));
  if (missing.length > 0) {
    throw new HavenError('internal', `Backup ${file} lacks table(s) ${missing.join(', ')}`, { missing });
  }
  return summary;
}
