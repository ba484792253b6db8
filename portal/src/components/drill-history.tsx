import { countChecks, type DrillRun, type DrillState, drillRunChecks } from '../../../src/domain/drill.ts';
import { formatDuration, formatTime } from '../format-time.ts';
import { Link } from '../router.tsx';

const STATE_LOOK: Record<DrillState, string> = {
  passed: 'health-healthy',
  failed: 'health-critical',
  interrupted: 'health-critical',
  running: 'badge-busy',
  waiting: 'job-waiting',
  skipped: '',
  cancelled: '',
};

/** A drill's state: green only for passed. */
export function DrillStateBadge({ state }: { state: DrillState }) {
  return (
    <span className={`badge ${STATE_LOOK[state]}`} data-drill-state={state}>
      {state}
    </span>
  );
}

/** From its start (or creation, while it waits) to its end, or until now while it runs. */
export function drillDurationSeconds(run: DrillRun, now = Date.now()): number | null {
  const from = run.startedAt ?? null;
  if (from === null) return null;
  return ((run.endedAt ? Date.parse(run.endedAt) : now) - Date.parse(from)) / 1000;
}

function pointOf(run: DrillRun): string {
  const points = run.machines.flatMap((m) => (m.point ? [m.point] : []));
  if (points.length === 0) return '—';
  if (points.length > 1) return `${points.length} machines' points`;
  return `${points[0]!.type} of ${formatTime(points[0]!.time)}`;
}

/** How a drill's checks ended, its machines' and a plan's own: passed, failed, not checked (never counted as passed). */
export function CheckCounts({ run }: { run: DrillRun }) {
  const counts = countChecks(drillRunChecks(run));
  if (counts.passed + counts.failed + counts.notChecked === 0) return <span className="muted">none ran</span>;
  // Only the counts there are: "0 passed" in green would read as good news.
  const parts = [
    { key: 'passed', count: counts.passed, className: 'ok-text', text: 'passed' },
    { key: 'failed', count: counts.failed, className: 'bad-text', text: 'failed' },
    { key: 'not-checked', count: counts.notChecked, className: '', text: 'not checked' },
  ].filter((p) => p.count > 0);
  return (
    <span className="check-counts">
      {parts.map((p, i) => (
        <span key={p.key}>
          {i > 0 && ', '}
          <span className={p.className || undefined}>
            {p.count} {p.text}
          </span>
        </span>
      ))}
    </span>
  );
}

/** Drills newest first: when, state, point, RTO, checks and duration, each linking to its drill page. */
export function DrillHistory({ drills, showTarget = false }: { drills: DrillRun[]; showTarget?: boolean }) {
  if (drills.length === 0) return <p className="muted">No drills yet.</p>;
  return (
    <div className="table-wrap">
      <table className="drills stack" data-testid="drill-history">
        <thead>
          <tr>
            <th scope="col">When</th>
            {showTarget && <th scope="col">Of</th>}
            <th scope="col">State</th>
            <th scope="col">Point</th>
            <th scope="col">RTO</th>
            <th scope="col">Checks</th>
            <th scope="col">Duration</th>
          </tr>
        </thead>
        <tbody>
          {drills.map((run) => {
            const rto = run.target.kind === 'plan' ? run.rtoSeconds : (run.machines[0]?.rtoSeconds ?? null);
            const duration = drillDurationSeconds(run);
            return (
              <tr key={run.id} data-drill={run.id}>
                <th scope="row">
                  <Link to={`/drills/${run.id}`}>{formatTime(run.startedAt ?? run.createdAt)}</Link>
                </th>
                {showTarget && (
                  <td data-label="Of">
                    {run.target.kind === 'plan' ? 'plan ' : ''}
                    {run.targetName}
                  </td>
                )}
                <td data-label="State">
                  {/* One block: stacked at phone width, the cell lays out its children side by side. */}
                  <div>
                    <DrillStateBadge state={run.state} />
                    {run.reason && run.state !== 'passed' && (
                      <div className="muted small reason" title={run.reason}>
                        {run.reason}
                      </div>
                    )}
                  </div>
                </td>
                <td data-label="Point">{pointOf(run)}</td>
                <td data-label="RTO">{rto === null ? '—' : formatDuration(rto)}</td>
                <td data-label="Checks">
                  <CheckCounts run={run} />
                </td>
                <td data-label="Duration">{duration === null ? '—' : formatDuration(duration)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
