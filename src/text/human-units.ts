/** Sizes, durations and times as people read them (and write them, in the CLI's options), in the CLI's tables and the portal's. */
import { HavenError } from '../errors/index.ts';

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
  if (s < 86_400)
    return `${Math.floor(s / 3600)} h${s % 3600 >= 60 ? ` ${Math.floor((s % 3600) / 60)} min` : ''}`;
  return `${Math.floor(s / 86_400)} d${s % 86_400 >= 3600 ? ` ${Math.floor((s % 86_400) / 3600)} h` : ''}`;
}

/** '12 s ago', '3 min ago', '5 h ago', '2 d ago' (one unit: a table cell, not a stopwatch); 'in 3 min' ahead. */
export function ago(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return 'never';
  const seconds = (now - Date.parse(iso)) / 1000;
  const s = Math.abs(seconds);
  const text =
    s < 60
      ? `${Math.round(s)} s`
      : s < 3600
        ? `${Math.floor(s / 60)} min`
        : s < 86_400
          ? `${Math.floor(s / 3600)} h`
          : `${Math.floor(s / 86_400)} d`;
  if (s < 1) return 'just now';
  return seconds >= 0 ? `${text} ago` : `in ${text}`;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

/** A field's name as a label: 'machineUp' → 'Machine up' (job outputs, in the CLI and the portal). */
export function labelOfKey(key: string): string {
  const words = key.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** A number in a job's output, in the unit its name says: '…Bytes' a size, '…Seconds' a duration. */
export function formatOutputNumber(key: string, value: number): string {
  if (/bytes$/i.test(key)) return formatBytes(value);
  if (/seconds$/i.test(key)) return formatDuration(value);
  return String(value);
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  K: 2 ** 10,
  M: 2 ** 20,
  G: 2 ** 30,
  T: 2 ** 40,
  P: 2 ** 50,
};

/** A size: bytes, or a number with K, M, G, T or P (binary units; `10G`, `512MiB`, `1.0 GiB` as `formatBytes` prints). */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*$/i.exec(text);
  const unit = SIZE_UNITS[(match?.[2] ?? '').toUpperCase()];
  const bytes = match !== null && unit !== undefined ? Number(match[1]) * unit : Number.NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new HavenError(
      'validation_failed',
      `size '${text}' is not a positive whole number of bytes; write bytes or a number with K, M, G, T or P (e.g. 10G)`,
      { field: 'size', value: text },
    );
  }
  return bytes;
}

const DURATION_UNITS: Record<string, number> = {
  ms: 0.001,
  s: 1,
  sec: 1,
  m: 60,
  min: 60,
  h: 3600,
  d: 86_400,
  w: 604_800,
};
const DURATION_PART = /(\d+(?:\.\d+)?)\s*(ms|sec|s|min|m|h|d|w)?\s*/gy;

/**
 * A duration in seconds for option `field`: a bare number of seconds (as
 * before units), or numbers with units, also as `formatDuration` prints them
 * (`90s`, `15m`, `15 min`, `1h30m`, `1 h 30 min`, `1.5h`, `7d`, `250ms`).
 */
export function parseDuration(text: string, field: string): number {
  const trimmed = text.trim();
  DURATION_PART.lastIndex = 0;
  let seconds = 0;
  let parts = 0;
  let bare = false;
  let end = 0;
  for (let m = DURATION_PART.exec(trimmed); m !== null && m[0] !== ''; m = DURATION_PART.exec(trimmed)) {
    parts++;
    bare ||= m[2] === undefined;
    seconds += Number(m[1]) * DURATION_UNITS[m[2] ?? 's']!;
    end = DURATION_PART.lastIndex;
  }
  // A bare number stands alone: '1 30' is a typo, not 31 s.
  if (parts === 0 || end !== trimmed.length || (bare && parts > 1) || !Number.isFinite(seconds)) {
    throw new HavenError(
      'bad_request',
      `--${field}: '${text}' is not a duration like 90s, 15m, 1h30m, 24h or 7d (a bare number is seconds)`,
      { field },
    );
  }
  return seconds;
}
