/** Sizes, durations and times as people read them, in the CLI's tables and the portal's. */

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
