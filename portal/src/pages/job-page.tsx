import { useEffect, useState } from 'react';
import { isTerminalJobState } from '../../../src/domain/job-states.ts';
import { ApiError, type JobWithCancel } from '../api-client.ts';
import { JobStateBadge, StepStateBadge } from '../components/badges.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { ProgressBar } from '../components/progress-bar.tsx';
import { TargetLink } from '../components/target-link.tsx';
import { formatTime } from '../format-time.ts';
import { Link } from '../router.tsx';
import { canOperate, useSession } from '../session.tsx';

/** Jobs whose cancel the seeds warn about: a failover stopped half-way leaves the machine unreplicated. */
const NEVER_HALF_WAY = new Set(['failover', 'planned-failover', 'failback', 'complete-failover']);

/** A job with its steps, kept live by the vault's server-sent events (no reload, no polling). */
export function JobPage({ id }: { id: string }) {
  const { api, role } = useSession();
  const [job, setJob] = useState<JobWithCancel>();
  const [error, setError] = useState<ApiError>();
  const [live, setLive] = useState(false);
  const [cancelError, setCancelError] = useState<ApiError>();

  useEffect(() => {
    const abort = new AbortController();
    let retry: ReturnType<typeof setTimeout> | undefined;
    const follow = () => {
      setLive(true);
      api
        .followJob(id, setJob, abort.signal)
        .then(() => setLive(false))
        .catch((e: unknown) => {
          if (abort.signal.aborted) return;
          setLive(false);
          if (e instanceof ApiError) setError(e);
          // A dropped stream (vault restart, proxy timeout) reconnects; the vault resends the job first.
          else retry = setTimeout(follow, 2000);
        });
    };
    follow();
    return () => {
      abort.abort();
      clearTimeout(retry);
    };
  }, [api, id]);

  // The stream ends when the job does; the last event is its final state.
  const finished = job !== undefined && isTerminalJobState(job.state);

  const cancel = async () => {
    setCancelError(undefined);
    try {
      setJob(await api.post<JobWithCancel>(`/jobs/${id}/cancel`));
    } catch (e) {
      if (e instanceof ApiError) setCancelError(e);
    }
  };

  if (error) {
    return (
      <section>
        <h1>Job</h1>
        <ErrorMessage error={error} />
        <Link to="/jobs">All jobs</Link>
      </section>
    );
  }
  if (!job) return <p aria-busy="true">Loading…</p>;
  return (
    <section className="job" data-job-state={job.state}>
      <p className="crumbs">
        <Link to="/jobs">Jobs</Link> /
      </p>
      <h1>
        {job.kind} <JobStateBadge state={job.state} />
      </h1>
      <p className="muted small" aria-live="polite">
        {finished ? 'Finished.' : live ? 'Live: updates arrive as the job runs.' : 'Reconnecting…'}
      </p>
      <div className="job-summary">
        <ProgressBar value={job.progress} label="Overall progress" state={job.state} />
        <dl className="facts">
          <dt>Target</dt>
          <dd>
            <TargetLink type={job.targetType} id={job.targetId} />
          </dd>
          <dt>Started by</dt>
          <dd>{job.createdBy}</dd>
          <dt>Created</dt>
          <dd>{formatTime(job.createdAt)}</dd>
          <dt>Finished</dt>
          <dd>{formatTime(job.finishedAt)}</dd>
        </dl>
      </div>
      {job.error && (
        <div className="error" role="alert">
          <strong>{job.error.message}</strong> <span className="muted small">({job.error.code})</span>
        </div>
      )}
      {!finished && NEVER_HALF_WAY.has(job.kind) && !job.cancel.cancellable && (
        <p className="warning" role="note" data-testid="no-cancel">
          This {job.kind} cannot be cancelled{job.cancel.reason ? `: ${job.cancel.reason}` : '.'} A failover
          stopped half-way would leave the machine unreplicated.
        </p>
      )}
      {!finished && canOperate(role) && (
        <div className="actions">
          <button
            type="button"
            onClick={cancel}
            disabled={!job.cancel.cancellable || job.cancelRequested}
            aria-describedby={job.cancel.reason ? 'cancel-reason' : undefined}
          >
            {job.cancelRequested ? 'Cancel requested' : 'Cancel job'}
          </button>
          {job.cancel.reason && (
            <span id="cancel-reason" className="muted small">
              {job.cancel.reason}
            </span>
          )}
        </div>
      )}
      <ErrorMessage error={cancelError} />
      <h2>Steps</h2>
      <ol className="steps">
        {job.steps.map((step) => (
          <li key={step.index} data-step-state={step.state}>
            <div className="step-head">
              <strong>{step.title}</strong> <StepStateBadge state={step.state} />
            </div>
            <ProgressBar value={step.progress} label={`${step.title} progress`} state={step.state} />
            {step.message && <p className="step-message">{step.message}</p>}
            {step.error && (
              <p className="error">
                {step.error.message} <span className="muted small">({step.error.code})</span>
              </p>
            )}
            <p className="muted small">
              {step.startedAt ? `started ${formatTime(step.startedAt)}` : 'not started'}
              {step.finishedAt ? ` · finished ${formatTime(step.finishedAt)}` : ''}
            </p>
          </li>
        ))}
      </ol>
      {Object.keys(job.output).length > 0 && (
        <>
          <h2>Log and output</h2>
          <pre className="log">{JSON.stringify(job.output, null, 2)}</pre>
        </>
      )}
    </section>
  );
}
