import { useEffect, useState } from 'react';
import { isTerminalJobState } from '../../../src/domain/job-states.ts';
import {
  type JobStep,
  type Machine,
  type MachineRuntime,
  outputOutsideSteps,
} from '../../../src/domain/model.ts';
import { jobTitle } from '../../../src/text/job-title.ts';
import { ApiError, type JobWithCancel } from '../api-client.ts';
import { JobStateBadge, StepStateBadge } from '../components/badges.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { chosenPointOf, JobOutput, nameOfChosenPoint } from '../components/job-output.tsx';
import { ProgressBar } from '../components/progress-bar.tsx';
import { TargetLink } from '../components/target-link.tsx';
import { formatDuration, formatTime } from '../format-time.ts';
import { POINT_OPTIONS } from '../operations.ts';
import { Link } from '../router.tsx';
import { canOperate, useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';

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
  const now = useNow(finished ? null : 1000);
  const runsFrom = RUNS_FROM[job?.kind ?? ''];
  const machine = useResource<Machine>(
    job && runsFrom && job.targetType === 'machine' && job.targetId ? `/machines/${job.targetId}` : null,
  );

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
  // Old jobs kept one output for the whole job: it shows as their results, as it always did.
  const outside = outputOutsideSteps(job);
  return (
    <section className="job" data-job-state={job.state}>
      <p className="crumbs">
        <Link to="/jobs">Jobs</Link> /
      </p>
      <h1>
        {jobTitle(job)} <JobStateBadge state={job.state} />
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
          <dt>Duration</dt>
          <dd data-testid="job-duration">{durationOf(job, now)}</dd>
          {pointFact(job, runsFrom ? machine.data?.runtime[runsFrom] : undefined)}
        </dl>
      </div>
      {job.error && (
        <div className="error" role="alert">
          <strong>{job.error.message}</strong> <span className="muted small">({job.error.code})</span>
        </div>
      )}
      {!finished && NEVER_HALF_WAY.has(job.kind) && !job.cancel.cancellable && (
        <p className="warning" role="note" data-testid="no-cancel">
          This {jobTitle(job).toLowerCase()} cannot be cancelled
          {job.cancel.reason ? `: ${job.cancel.reason}` : '.'} A failover stopped half-way would leave the
          machine unreplicated.
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
              <span className="step-duration muted small" data-testid="step-duration">
                {durationOf(step, now)}
              </span>
            </div>
            <ProgressBar value={step.progress} label={`${step.title} progress`} state={step.state} />
            {step.message && <p className="step-message">{step.message}</p>}
            {step.error && (
              <p className="error">
                {step.error.message} <span className="muted small">({step.error.code})</span>
              </p>
            )}
            {step.output && Object.keys(step.output).length > 0 && (
              <div className="job-output step-output" data-testid="step-output">
                <JobOutput output={step.output} />
              </div>
            )}
            <p className="muted small">
              {step.startedAt ? `started ${formatTime(step.startedAt)}` : 'not started'}
              {step.finishedAt ? ` · finished ${formatTime(step.finishedAt)}` : ''}
            </p>
          </li>
        ))}
      </ol>
      {Object.keys(outside).length > 0 && (
        <>
          <h2>Results</h2>
          <div className="job-output" data-testid="job-output">
            <JobOutput output={outside} />
          </div>
        </>
      )}
    </section>
  );
}

/** Which running copy a job's point becomes: a later change-point moves it, and the job page says so. */
const RUNS_FROM: Record<string, keyof MachineRuntime> = {
  'test-failover': 'test',
  failover: 'failover',
  'planned-failover': 'failover',
  'change-recovery-point': 'failover',
};

/** Wall-clock time, ticking only while something runs. */
function useNow(everyMs: number | null): number {
  const [now, setNow] = useState(Date.now);
  useEffect(() => {
    if (everyMs === null) return;
    const timer = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(timer);
  }, [everyMs]);
  return now;
}

/** "took 4.2 s", "running for 12 s", or "not started". */
function durationOf(span: Pick<JobStep, 'startedAt' | 'finishedAt'>, now: number): string {
  if (!span.startedAt) return 'not started';
  const from = Date.parse(span.startedAt);
  if (span.finishedAt) return `took ${formatDuration((Date.parse(span.finishedAt) - from) / 1000)}`;
  return `running for ${formatDuration(Math.max(0, now - from) / 1000)}`;
}

/** The recovery point by name: the one chosen, else the one asked for; and where the copy runs from now. */
function pointFact(job: JobWithCancel, copy: MachineRuntime[keyof MachineRuntime] | undefined) {
  const chosen = chosenPointOf(job.output);
  // A plan job asks once for all its machines (in its options); each machine's job chooses its own point.
  const options = job.input.options as { recoveryPoint?: { option?: string } } | undefined;
  const asked = (job.input.recoveryPoint ?? options?.recoveryPoint) as { option?: string } | undefined;
  if (!chosen && !asked) return null;
  const askedTitle = POINT_OPTIONS.find((o) => o.value === asked?.option)?.title ?? asked?.option;
  const how = options?.recoveryPoint
    ? "for every machine, each machine's job names its point"
    : 'chosen by the first step';
  return (
    <>
      <dt>Recovery point</dt>
      <dd data-testid="job-point">
        {chosen ? nameOfChosenPoint(chosen) : `${askedTitle}: ${how}`}
        {chosen && copy && copy.pointId !== chosen.id && (
          <span className="muted" data-testid="job-point-now">
            {' '}
            · changed since: the copy now runs from {formatTime(copy.pointTime)}
          </span>
        )}
      </dd>
    </>
  );
}
