/**
 * Conversions between domain values and columns that read back differently on
 * the two dialects (see schema.ts). Kept in one place so no repository has to
 * know which database it talks to.
 */

export function toBooleanColumn(value: boolean): number {
  return value ? 1 : 0;
}

/** SQLite returns 0/1, PostgreSQL true/false. */
export function fromBooleanColumn(value: number | boolean): boolean {
  return value === true || value === 1;
}

/** PostgreSQL returns bigint (and count(*)) as a string to avoid precision loss. */
export function fromBigIntColumn(value: number | string | bigint): number {
  return Number(value);
}

export function toJsonColumn(value: unknown): string {
  return JSON.stringify(value);
}

export function fromJsonColumn<T>(text: string): T {
  return JSON.parse(text) as T;
}

export function fromNullableJsonColumn<T>(text: string | null): T | null {
  return text === null ? null : (JSON.parse(text) as T);
}

/** Affected-row count of an UPDATE/DELETE result, as a number. */
export function affectedRows(result: { numUpdatedRows?: bigint; numDeletedRows?: bigint }): number {
  return Number(result.numUpdatedRows ?? result.numDeletedRows ?? 0n);
}
