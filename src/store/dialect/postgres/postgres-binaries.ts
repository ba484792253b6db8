import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { HavenError } from '../../../errors/index.ts';

const run = promisify(execFile);

/**
 * Finds a PostgreSQL program: on PATH's usual places first, then the newest
 * Debian server directory (initdb and pg_ctl live only there).
 */
export function findPostgresBinary(name: string): string {
  for (const dir of ['/usr/local/bin', '/usr/bin']) {
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+$/.test(v))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  for (const version of versions) {
    const candidate = join(root, version, 'bin', name);
    if (existsSync(candidate)) return candidate;
  }
  throw new HavenError('not_available', `PostgreSQL program '${name}' is not installed`, { program: name });
}

/**
 * Runs a libpq client program (pg_dump, pg_restore) against `url`. The password
 * travels in PGPASSWORD, not on the command line, where `ps` would show it.
 */
export async function runPostgresClient(program: string, url: string, args: string[]): Promise<void> {
  const parsed = new URL(url);
  const password = decodeURIComponent(parsed.password);
  parsed.password = '';
  const env = { ...process.env };
  if (password) env.PGPASSWORD = password;
  try {
    await run(findPostgresBinary(program), [...args, `--dbname=${parsed.toString()}`], {
      env,
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (error) {
    if (error instanceof HavenError) throw error;
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new HavenError('internal', `${program} failed: ${stderr || (error as Error).message}`, { program });
  }
}
