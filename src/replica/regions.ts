import type { Region } from '../disk/index.ts';

/** Sorts byte ranges and merges those that overlap or touch (pure). */
export function mergeRegions(regions: Iterable<Region>): Region[] {
  const sorted = [...regions].filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  const out: Region[] = [];
  for (const r of sorted) {
    const last = out.at(-1);
    if (last !== undefined && r.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset);
    } else out.push({ offset: r.offset, length: r.length });
  }
  return out;
}

export function regionBytes(regions: readonly Region[]): number {
  return regions.reduce((n, r) => n + r.length, 0);
}
