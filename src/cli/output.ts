/** How the CLI prints: aligned tables for people (ids with --wide), JSON with --json for scripts. */
export interface Output {
  json: boolean;
  /** --wide: tables add the columns marked wide (ids, …). */
  wide: boolean;
  write(text: string): void;
}

export function stdoutOutput(json: boolean, wide = false): Output {
  return { json, wide, write: (text) => process.stdout.write(text) };
}

export function printJson(out: Output, value: unknown): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A table column: its header as people read it, and the cell of a row. */
export interface Column<T> {
  header: string;
  value: (row: T) => unknown;
  /** Shown with --wide only. */
  wide?: boolean;
}

function cell(v: unknown): string {
  if (v === null || v === undefined || v === '') return '-';
  if (Array.isArray(v)) return v.length === 0 ? '-' : v.join(', ');
  return String(v);
}

export function printTable<T>(out: Output, rows: readonly T[], columns: readonly Column<T>[]): void {
  if (rows.length === 0) {
    out.write('(none)\n');
    return;
  }
  const shown = columns.filter((c) => out.wide || !c.wide);
  const cells = rows.map((row) => shown.map((c) => cell(c.value(row))));
  const widths = shown.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: string[]) =>
    `${values
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd()}\n`;
  out.write(line(shown.map((c) => c.header)));
  for (const row of cells) out.write(line(row));
}

/** Label and value per line, labels aligned; nested values are for the caller to put in words. */
export function printRecord(out: Output, entries: readonly (readonly [string, unknown])[]): void {
  const width = Math.max(...entries.map(([k]) => k.length));
  for (const [k, v] of entries) out.write(`${`${k}:`.padEnd(width + 1)}  ${cell(v)}\n`);
}
