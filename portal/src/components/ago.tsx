import { ago, formatTime } from '../format-time.ts';
import { useNow } from '../use-now.ts';

/** "12 s ago" that keeps counting (the shared clock), the exact time on hover. */
export function Ago({ iso }: { iso: string | null }) {
  const now = useNow();
  if (!iso) return <>{ago(null)}</>;
  return (
    <time dateTime={iso} title={formatTime(iso)}>
      {ago(iso, now)}
    </time>
  );
}
