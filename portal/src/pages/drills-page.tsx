import { useState } from 'react';
import { type DrillRun, describeCadence } from '../../../src/domain/drill.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { ConfirmDialog } from '../components/confirm-dialog.tsx';
import { DrillHistory } from '../components/drill-history.tsx';
import { DrillScheduleDialog, type PresentedDrillSchedule } from '../components/drill-schedule-dialog.tsx';
import { POINT_CHOICE_TEXT } from '../components/drill-settings-fields.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { formatTime } from '../format-time.ts';
import { Link } from '../router.tsx';
import { canOperate, useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';

/** Recent drills of every machine and plan, and the schedules that run them. */
export function DrillsPage() {
  const { api, role } = useSession();
  const operator = canOperate(role);
  const schedules = useResource<{ schedules: PresentedDrillSchedule[] }>('/drill-schedules', {
    refreshMs: 10_000,
  });
  const drills = useResource<{ drills: DrillRun[] }>('/drills?limit=50', { refreshMs: 5000 });
  const [editing, setEditing] = useState<PresentedDrillSchedule | 'new' | null>(null);
  const [deleting, setDeleting] = useState<PresentedDrillSchedule | null>(null);
  const [error, setError] = useState<ApiError>();

  const setEnabled = async (schedule: PresentedDrillSchedule, enabled: boolean) => {
    setError(undefined);
    const { id, targetName, target, nextRunAt, lastRunAt, createdBy, createdAt, updatedAt, ...settings } =
      schedule;
    try {
      await api.request('PUT', `/drill-schedules/${encodeURIComponent(id)}`, {
        ...settings,
        target:
          target.kind === 'machine'
            ? { kind: 'machine', machine: target.machineId }
            : { kind: 'plan', plan: target.planId },
        enabled,
      });
      schedules.reload();
    } catch (e) {
      setError(asApiError(e));
    }
  };

  const list = schedules.data?.schedules ?? [];
  return (
    <section className="drills-page">
      <h1>Drills</h1>
      <p className="muted">
        A drill boots a recovery point on the isolated test network, checks it and cleans up: the proof that a
        machine or plan can be recovered.
      </p>
      <ErrorMessage error={schedules.error ?? drills.error ?? error} />
      <div className="grid">
        <article className="card wide">
          <h2>Schedules</h2>
          {operator && (
            <fieldset className="actions">
              <legend className="sr-only">Actions</legend>
              <button type="button" data-testid="new-drill-schedule" onClick={() => setEditing('new')}>
                New schedule…
              </button>
            </fieldset>
          )}
          {schedules.data && list.length === 0 && <p className="muted">No drill schedules yet.</p>}
          {list.length > 0 && (
            <div className="table-wrap">
              <table className="drill-schedules stack" data-testid="drill-schedules">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Drills</th>
                    <th scope="col">How often</th>
                    <th scope="col">Point</th>
                    <th scope="col">Next run</th>
                    <th scope="col">Last run</th>
                    {operator && <th scope="col">Actions</th>}
                  </tr>
                </thead>
                <tbody>
                  {list.map((s) => (
                    <tr key={s.id} data-schedule={s.name}>
                      <th scope="row">{s.name}</th>
                      <td data-label="Drills">
                        <Link
                          to={
                            s.target.kind === 'plan'
                              ? `/plans/${s.target.planId}`
                              : `/machines/${s.target.machineId}`
                          }
                        >
                          {s.target.kind === 'plan' ? 'plan ' : ''}
                          {s.targetName ?? '(gone)'}
                        </Link>
                      </td>
                      <td data-label="How often">{describeCadence(s.cadence)}</td>
                      <td data-label="Point">{POINT_CHOICE_TEXT[s.point]}</td>
                      <td data-label="Next run">
                        {s.enabled ? formatTime(s.nextRunAt) : <span className="badge">disabled</span>}
                      </td>
                      <td data-label="Last run">{s.lastRunAt ? formatTime(s.lastRunAt) : 'never'}</td>
                      {operator && (
                        <td className="row-actions" data-label="Actions">
                          <span className="buttons">
                            <button type="button" onClick={() => setEditing(s)}>
                              Edit…
                            </button>
                            <button type="button" onClick={() => void setEnabled(s, !s.enabled)}>
                              {s.enabled ? 'Disable' : 'Enable'}
                            </button>
                            <button type="button" className="danger" onClick={() => setDeleting(s)}>
                              Delete…
                            </button>
                          </span>
                        </td>
                      )}
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </article>
        <article className="card wide">
          <h2>Recent drills</h2>
          {drills.data ? (
            <DrillHistory drills={drills.data.drills} showTarget />
          ) : (
            <p className="muted">Loading…</p>
          )}
        </article>
      </div>
      {editing && (
        <DrillScheduleDialog
          schedule={editing === 'new' ? null : editing}
          onClose={() => setEditing(null)}
          onSaved={() => {
            setEditing(null);
            schedules.reload();
          }}
        />
      )}
      {deleting && (
        <ConfirmDialog
          title={`Delete drill schedule ${deleting.name}?`}
          action="Delete schedule"
          onClose={() => setDeleting(null)}
          onConfirm={async () => {
            await api.request('DELETE', `/drill-schedules/${encodeURIComponent(deleting.id)}`);
            setDeleting(null);
            schedules.reload();
          }}
        >
          <p>Its drills and their reports are kept.</p>
        </ConfirmDialog>
      )}
    </section>
  );
}
