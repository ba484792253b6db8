import { useState } from 'react';
import {
  DRILL_END_STATES,
  type DrillCheck,
  type DrillCheckResult,
  type DrillMachineResult,
  type DrillRun,
} from '../../../src/domain/drill.ts';
import type { Job } from '../../../src/domain/model.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { CheckCounts, DrillStateBadge, drillDurationSeconds } from '../components/drill-history.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { ProgressBar } from '../components/progress-bar.tsx';
import { formatDuration, formatTime } from '../format-time.ts';
import { Link } from '../router.tsx';
import { useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';

const RESULT_LOOK: Record<DrillCheckResult, string> = {
  passed: 'health-healthy',
  failed: 'health-critical',
  'not-checked': 'health-warning',
};

const REPORT_FORMATS = [
  { format: 'markdown', label: 'Markdown', extension: 'md', type: 'text/markdown' },
  { format: 'html', label: 'HTML', extension: 'html', type: 'text/html' },
  { format: 'json', label: 'JSON', extension: 'json', type: 'application/json' },
] as const;

/** One drill: its run, every check with its evidence, the clean-up, and its report to download. */
export function DrillPage({ id }: { id: string }) {
  const path = `/drills/${encodeURIComponent(id)}`;
  const [ended, setEnded] = useState(false);
  const drill = useResource<DrillRun>(path, ended ? {} : { refreshMs: 2000 });
  const run = drill.data;
  const isEnded = run !== undefined && DRILL_END_STATES.has(run.state);
  if (isEnded !== ended) setEnded(isEnded);
  const job = useResource<Job>(run?.jobId && !isEnded ? `/jobs/${run.jobId}` : null, { refreshMs: 2000 });

  if (drill.error) {
    return (
      <section>
        <h1>Drill</h1>
        <ErrorMessage error={drill.error} />
        <Link to="/drills">All drills</Link>
      </section>
    );
  }
  if (!run) return <p aria-busy="true">Loading…</p>;
  const duration = drillDurationSeconds(run);
  const running = job.data?.steps.find((s) => s.state === 'running');
  return (
    <section className="drill-page" data-drill-state={run.state}>
      <p className="crumbs">
        <Link to="/drills">Drills</Link> /
      </p>
      <h1>
        Drill of {run.target.kind === 'plan' ? 'plan ' : ''}
        {run.targetName} <DrillStateBadge state={run.state} />
      </h1>
      {run.reason && (
        <p className={run.state === 'failed' || run.state === 'interrupted' ? 'error-line' : 'notice'}>
          {run.reason}
        </p>
      )}
      {!isEnded && job.data && (
        <p className="notice drill-progress" role="status">
          <ProgressBar value={job.data.progress} label="drill progress" state={job.data.state} />{' '}
          {running ? running.title : job.data.state}
          {running?.message ? `: ${running.message}` : ''} · <Link to={`/jobs/${job.data.id}`}>its job</Link>
        </p>
      )}
      <ReportDownloads run={run} />
      <div className="grid">
        <article className="card">
          <h2>Run</h2>
          <dl className="facts">
            <dt>Of</dt>
            <dd>
              <Link
                to={
                  run.target.kind === 'plan'
                    ? `/plans/${run.target.planId}`
                    : `/machines/${run.target.machineId}`
                }
              >
                {run.targetName}
              </Link>
            </dd>
            <dt>Started by</dt>
            <dd>{run.scheduleId ? `a schedule (${run.createdBy})` : run.createdBy}</dd>
            <dt>Started</dt>
            <dd>{formatTime(run.startedAt ?? run.createdAt)}</dd>
            <dt>Ended</dt>
            <dd>{run.endedAt ? formatTime(run.endedAt) : 'still running'}</dd>
            <dt>Duration</dt>
            <dd>{duration === null ? '—' : formatDuration(duration)}</dd>
            <dt>Checks</dt>
            <dd data-testid="drill-check-counts">
              <CheckCounts run={run} />
            </dd>
            {run.target.kind === 'plan' && (
              <>
                <dt>Plan RTO</dt>
                <dd data-testid="drill-plan-rto">
                  {run.rtoSeconds === null ? '—' : formatDuration(run.rtoSeconds)}
                </dd>
              </>
            )}
            {run.jobId && (
              <>
                <dt>Job</dt>
                <dd>
                  <Link to={`/jobs/${run.jobId}`}>open its job</Link>
                </dd>
              </>
            )}
          </dl>
        </article>
        {run.checks.length > 0 && (
          <article className="card wide" data-drill-plan-checks>
            <h2>The plan's order and actions</h2>
            <ol className="drill-checks-list">
              {run.checks.map((c) => (
                <CheckResult key={`${c.kind}:${c.name}:${c.startedAt}`} check={c} />
              ))}
            </ol>
          </article>
        )}
        {run.machines.map((m) => (
          <MachineResult key={m.machineId} machine={m} ended={isEnded} />
        ))}
      </div>
    </section>
  );
}

function MachineResult({ machine: m, ended }: { machine: DrillMachineResult; ended: boolean }) {
  return (
    <article className="card wide" data-drill-machine={m.machineName}>
      <h2>
        <Link to={`/machines/${m.machineId}`}>{m.machineName}</Link>
      </h2>
      <dl className="facts">
        <dt>Point</dt>
        <dd>{m.point ? `${m.point.type} point of ${formatTime(m.point.time)}` : 'none chosen'}</dd>
        <dt>RTO</dt>
        <dd data-testid="drill-rto">
          {m.rtoSeconds !== null ? formatDuration(m.rtoSeconds) : ended ? '— (it did not come up)' : '—'}
        </dd>
        {m.copy && (
          <>
            <dt>Drill machine</dt>
            <dd>
              <code>{m.copy.vmName}</code> on network <code>{m.copy.network}</code>
            </dd>
          </>
        )}
        <dt>Clean-up</dt>
        <dd data-testid="drill-cleanup-state">
          {m.cleanedUp
            ? 'done: the drill machine and its overlay are gone'
            : ended
              ? 'not confirmed: the vault retries it'
              : 'after the checks'}
        </dd>
      </dl>
      <h3>Checks</h3>
      {m.checks.length === 0 ? (
        <p className="muted">{ended ? 'No check ran.' : 'None yet.'}</p>
      ) : (
        <ol className="drill-checks-list">
          {m.checks.map((c) => (
            <CheckResult key={`${c.kind}:${c.name}:${c.startedAt}`} check={c} />
          ))}
        </ol>
      )}
    </article>
  );
}

function CheckResult({ check: c }: { check: DrillCheck }) {
  return (
    <li className="drill-check" data-check={c.kind} data-result={c.result}>
      <p>
        <span className={`badge ${RESULT_LOOK[c.result]}`}>{c.result}</span> <strong>{c.name}</strong>{' '}
        <span className="muted small">{formatDuration(c.durationMs / 1000)}</span>
      </p>
      <p>{c.summary}</p>
      {c.evidence !== null ? (
        <details open={c.result === 'failed'}>
          <summary>Evidence</summary>
          {c.evidence.trim() === '' ? (
            <p className="muted small" data-testid="check-evidence">
              Nothing was printed.
            </p>
          ) : (
            <pre className="log" data-testid="check-evidence">
              {c.evidence}
            </pre>
          )}
        </details>
      ) : (
        c.evidenceIsScriptOutput && (
          <p className="muted small" data-testid="script-output-hidden">
            The script's output is for operators and admins.
          </p>
        )
      )}
    </li>
  );
}

/**
 * The report in three formats. The API wants the token in a header, so a
 * plain link cannot fetch it: the portal fetches it and saves it as a file.
 */
function ReportDownloads({ run }: { run: DrillRun }) {
  const { api } = useSession();
  const [error, setError] = useState<ApiError>();
  const download = async (f: (typeof REPORT_FORMATS)[number]) => {
    setError(undefined);
    try {
      const text = await api.getText(`/drills/${encodeURIComponent(run.id)}/report?format=${f.format}`);
      const url = URL.createObjectURL(new Blob([text], { type: f.type }));
      const a = document.createElement('a');
      a.href = url;
      a.download = `drill-${run.id.slice(0, 8)}.${f.extension}`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (e) {
      setError(asApiError(e));
    }
  };
  return (
    <div className="report-downloads">
      <span>Download the report:</span>
      {REPORT_FORMATS.map((f) => (
        <button key={f.format} type="button" data-report={f.format} onClick={() => void download(f)}>
          {f.label}
        </button>
      ))}
      <ErrorMessage error={error} />
    </div>
  );
}
