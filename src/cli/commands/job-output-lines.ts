import { formatOutputNumber, labelOfKey } from '../../text/human-units.ts';
import { localTime } from './machine-summary.ts';

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;
/** Console tails and file lists: their last lines, as in the portal. */
const MAX_LINES = 40;

/**
 * A job's or a step's output as indented 'Label: value' lines: times, sizes
 * and durations in words, nested objects indented, never JSON.
 */
export function jobOutputLines(output: Record<string, unknown>, indent = '  '): string[] {
  return Object.entries(output).flatMap(([key, value]) => {
    const label = `${indent}${labelOfKey(key)}:`;
    const point = recoveryPointOf(value);
    if (point) return [`${label} ${point}`];
    if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string')) {
      return [label, ...(value as string[]).slice(-MAX_LINES).map((line) => `${indent}  ${line}`)];
    }
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      return [label, ...jobOutputLines(value as Record<string, unknown>, `${indent}  `)];
    }
    if (Array.isArray(value) && value.some((v) => v !== null && typeof v === 'object' && !Array.isArray(v))) {
      // A list of records (e.g. one per disk): each numbered, its fields below it.
      return [
        label,
        ...value.flatMap((item, i) =>
          item !== null && typeof item === 'object' && !Array.isArray(item)
            ? [`${indent}  ${i + 1}.`, ...jobOutputLines(item as Record<string, unknown>, `${indent}    `)]
            : [`${indent}  ${i + 1}. ${scalar(key, item)}`],
        ),
      ];
    }
    return [`${label} ${scalar(key, value)}`];
  });
}

function scalar(key: string, value: unknown): string {
  if (value === null || value === undefined || value === '') return '-';
  if (typeof value === 'number') return formatOutputNumber(key, value);
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'string') return ISO_TIME.test(value) ? localTime(value) : value;
  if (Array.isArray(value)) return value.map((v) => scalar(key, v)).join(', ');
  return String(value);
}

/** A chosen recovery point ({ id, time, type, option? }) by its time and kind, as the portal names it. */
function recoveryPointOf(value: unknown): string | null {
  const p = value as { id?: unknown; time?: unknown; type?: unknown; option?: unknown } | null;
  if (!p || typeof p !== 'object' || typeof p.time !== 'string' || typeof p.type !== 'string') return null;
  if (typeof p.id !== 'string') return null;
  const option = typeof p.option === 'string' ? ` (${p.option})` : '';
  return `${localTime(p.time)} · ${p.type}${option}`;
}
