import { HavenError } from '../errors/index.ts';

interface DatabaseError {
  /** PostgreSQL SQLSTATE, or node:sqlite's 'ERR_SQLITE_ERROR'. */
  code?: string;
  /** SQLite extended result code. */
  errcode?: number;
}

const sqliteUnique = new Set([2067 /* CONSTRAINT_UNIQUE */, 1555 /* CONSTRAINT_PRIMARYKEY */]);
const sqliteForeignKey = 787; /* CONSTRAINT_FOREIGNKEY */

export function isUniqueViolation(error: unknown): boolean {
  const e = error as DatabaseError;
  return e?.code === '23505' || (e?.code === 'ERR_SQLITE_ERROR' && sqliteUnique.has(e.errcode ?? 0));
}

export function isForeignKeyViolation(error: unknown): boolean {
  const e = error as DatabaseError;
  return e?.code === '23503' || (e?.code === 'ERR_SQLITE_ERROR' && e.errcode === sqliteForeignKey);
}

/**
 * Runs an insert or update and turns the constraint violations callers can cause into
 * HavenErrors: a duplicate id or name is a conflict, a reference to a missing
 * parent (e.g. a host's site) is not_found.
 */
export async function checkedWrite<T>(
  kind: string,
  name: string,
  write: () => Promise<T>,
  parent?: string,
): Promise<T> {
  try {
    return await write();
  } catch (error) {
    if (isUniqueViolation(error)) {
      throw new HavenError('conflict', `${kind} '${name}' already exists (same id or name)`, { kind, name });
    }
    if (isForeignKeyViolation(error)) {
      throw new HavenError(
        'not_found',
        `${kind} '${name}' refers to a ${parent ?? 'parent'} that does not exist`,
        {
          kind,
          name,
          parent,
        },
      );
    }
    throw error;
  }
}
