/**
 * Block status at sector granularity. A backend may know its allocation to
 * the byte (a replica view's extent map does), and NBD allows that, but QEMU
 * rounds what it hears to 512-byte sectors: `qemu-img convert` and QEMU's
 * mirror skip a sector reported as a hole even where part of it holds data.
 * So a sector that holds any data is reported as data ("data wins"): a
 * sector's flags are the AND of the flags of every byte in it (HOLE and ZERO
 * only when true of all of it).
 */
export const SECTOR_BYTES = 512;

/** A contiguous run [start, end) of an export with one allocation state (NBD base:allocation flags). */
export interface StatusRun {
  start: number;
  end: number;
  flags: number;
}

/**
 * `runs` (contiguous, ascending, from the request's offset) with every
 * boundary inside them moved to a sector boundary, merged where neighbours
 * agree. The first run keeps its start (the reply starts at the request's
 * offset) and the last its end (the request's or the export's end).
 */
export function sectorAligned(runs: readonly StatusRun[]): StatusRun[] {
  const out: StatusRun[] = [];
  const last = runs.at(-1);
  if (last === undefined) return out;
  const end = last.end;
  for (const run of runs) {
    let start = run.start;
    const tail = out.at(-1);
    if (tail !== undefined && tail.end > start) {
      // The previous run's last sector reaches into this one: the sector takes both states.
      tail.flags &= run.flags;
      if (run.end <= tail.end) continue;
      start = tail.end;
    }
    const stop = run.end;
    const sectorStart = stop - (stop % SECTOR_BYTES);
    if (stop % SECTOR_BYTES === 0 || stop === end) {
      out.push({ start, end: stop, flags: run.flags });
    } else {
      if (sectorStart > start) out.push({ start, end: sectorStart, flags: run.flags });
      out.push({
        start: Math.max(start, sectorStart),
        end: Math.min(sectorStart + SECTOR_BYTES, end),
        flags: run.flags,
      });
    }
  }
  const merged: StatusRun[] = [];
  for (const run of out) {
    const prev = merged.at(-1);
    if (prev !== undefined && prev.flags === run.flags && prev.end === run.start) prev.end = run.end;
    else merged.push({ ...run });
  }
  return merged;
}
