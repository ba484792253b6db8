/** Human durations and times for the portal's tables and charts: durations and sizes as the CLI prints them. */
import { formatDuration } from '../../src/text/human-units.ts';

export { formatBytes, formatDuration } from '../../src/text/human-units.ts';

export function ago(iso: string | null, now: number = Date.now()): string {
  if (!iso) return 'never';
  return `${formatDuration((now - Date.parse(iso)) / 1000)} ago`;
}

export function formatTime(iso: string | null): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
}
