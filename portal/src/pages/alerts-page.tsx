import { useState } from 'react';
import type { Alert } from '../../../src/domain/model.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { Ago } from '../components/ago.tsx';
import { alertsChanged } from '../components/alert-count.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { TargetLink } from '../components/target-link.tsx';
import { formatTime } from '../format-time.ts';
import { canOperate, useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';

type Show = 'open' | 'closed' | 'all';
const QUERY: Record<Show, string> = { open: 'open=true&', closed: 'open=false&', all: '' };

export function AlertsPage() {
  const { api, role } = useSession();
  const [show, setShow] = useState<Show>('open');
  const alerts = useResource<{ alerts: Alert[] }>(`/alerts?${QUERY[show]}limit=500`, {
    refreshMs: 5000,
  });
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<ApiError>();
  const acknowledge = async (alert: Alert) => {
    setBusy(alert.id);
    setError(undefined);
    try {
      await api.post<Alert>(`/alerts/${encodeURIComponent(alert.id)}/acknowledge`);
      alerts.reload();
      alertsChanged();
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(null);
    }
  };
  const list = alerts.data?.alerts ?? [];
  return (
    <section>
      <h1>Alerts</h1>
      <fieldset className="radios filters">
        <legend className="sr-only">Show</legend>
        {(['open', 'closed', 'all'] as const).map((s) => (
          <label key={s}>
            <input type="radio" name="alerts-show" checked={show === s} onChange={() => setShow(s)} /> {s}
          </label>
        ))}
      </fieldset>
      <ErrorMessage error={alerts.error ?? error} />
      {alerts.data && list.length === 0 && (
        <p className="muted">{show === 'open' ? 'No open alerts.' : 'No alerts.'}</p>
      )}
      {list.length > 0 && (
        <div className="table-wrap">
          <table className="stack" data-testid="alerts-table">
            <thead>
              <tr>
                <th scope="col">Severity</th>
                <th scope="col">Alert</th>
                <th scope="col">About</th>
                <th scope="col">Raised</th>
                <th scope="col">State</th>
              </tr>
            </thead>
            <tbody>
              {list.map((a) => (
                <tr key={a.id} data-alert={a.key} className={`alert-${a.severity}`}>
                  <td data-label="Severity">
                    <span className={`badge severity-${a.severity}`}>{a.severity}</span>
                  </td>
                  <td data-label="Alert" className="wrap">
                    {a.message}
                  </td>
                  <td data-label="About">
                    <TargetLink type={a.subjectType} id={a.subjectId} />
                  </td>
                  <td data-label="Raised" title={formatTime(a.raisedAt)}>
                    <Ago iso={a.raisedAt} />
                  </td>
                  <td data-label="State">
                    <AlertState
                      alert={a}
                      onAcknowledge={canOperate(role) ? () => acknowledge(a) : null}
                      busy={busy === a.id}
                    />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function AlertState({
  alert,
  onAcknowledge,
  busy,
}: {
  alert: Alert;
  onAcknowledge: (() => void) | null;
  busy: boolean;
}) {
  if (alert.clearedAt) {
    return (
      <span title={formatTime(alert.clearedAt)}>
        cleared <Ago iso={alert.clearedAt} />
      </span>
    );
  }
  if (alert.acknowledged) {
    return (
      <span title={formatTime(alert.acknowledged.at)}>
        open · acknowledged by {alert.acknowledged.by} <Ago iso={alert.acknowledged.at} />
      </span>
    );
  }
  return (
    <span className="state-actions">
      <span>open</span>
      {onAcknowledge && (
        <button type="button" onClick={onAcknowledge} disabled={busy}>
          {busy ? 'Acknowledging…' : 'Acknowledge'}
        </button>
      )}
    </span>
  );
}
