import { useEffect } from 'react';
import type { Alert } from '../../../src/domain/model.ts';
import { useResource } from '../use-resource.ts';

const ALERTS_CHANGED = 'haven:alerts-changed';

/** Tells the navigation's count that an alert changed here (it also polls, for changes elsewhere). */
export function alertsChanged(): void {
  window.dispatchEvent(new Event(ALERTS_CHANGED));
}

/** Open alerts nobody has acknowledged yet, next to the Alerts link. */
export function AlertCount() {
  const open = useResource<{ alerts: Alert[] }>('/alerts?open=true&limit=1000', { refreshMs: 10_000 });
  const { reload } = open;
  useEffect(() => {
    window.addEventListener(ALERTS_CHANGED, reload);
    return () => window.removeEventListener(ALERTS_CHANGED, reload);
  }, [reload]);
  const count = (open.data?.alerts ?? []).filter((a) => !a.acknowledged).length;
  if (count === 0) return null;
  return (
    <span className="badge nav-count" data-testid="alert-count">
      {count}
      <span className="sr-only"> unacknowledged</span>
    </span>
  );
}
