import { PostgresDialect } from 'kysely';
import pg from 'pg';

export interface PostgresConnection {
  dialect: PostgresDialect;
  pool: pg.Pool;
}

/** Kysely's PostgreSQL dialect over a `pg` pool for `url`. */
export function createPostgresDialect(
  url: string,
  options: { maxConnections?: number } = {},
): PostgresConnection {
  const pool = new pg.Pool({ connectionString: url, max: options.maxConnections ?? 10 });
  // An idle client losing its connection (server restart) is discarded by the
  // pool; without a listener the 'error' event would crash the vault.
  pool.on('error', () => {});
  return { dialect: new PostgresDialect({ pool }), pool };
}

/** Whether the configured database URL selects PostgreSQL. */
export function isPostgresUrl(url: string | undefined): boolean {
  return url !== undefined && /^postgres(ql)?:\/\//.test(url);
}
