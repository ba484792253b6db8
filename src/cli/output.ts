/** How the CLI prints: aligned tables for people, JSON with --json for scripts. */
export interface Output {
  json: boolean;
  write(text: string): void;
}

export function stdoutOutput(json: boolean): Output {
  return { json, write: (text) => process.stdout.write(text) };
}

export function printJson(out: Output, value: unknown): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printTable(out: Output, rows: Record<string, unknown>[], columns: string[]): void {
  if (rows.length === 0) {
    out.write('(none)\n');
    return;
  }
  const cell = (v: unknown) =>
    v === null || v === undefined ? '-' : Array.isArray(v) ? v.join(',') : String(v);
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) =>
    `${values
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd()}\n`;
  out.write(line(columns.map((c) => c.toUpperCase())));
  for (const row of rows) out.write(line(columns.map((c) => cell(row[c]))));
}

export function printRecord(out: Output, record: Record<string, unknown>, keys?: string[]): void {
  const entries = (keys ?? Object.keys(record)).map((k) => [k, record[k]] as const);
  const width = Math.max(...entries.map(([k]) => k.length));
  for (const [k, v] of entries) {
    const text = typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v ?? '-');
    out.write(`${k.padEnd(width)}  ${text}\n`);
  }
}
