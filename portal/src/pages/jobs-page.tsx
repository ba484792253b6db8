import { useState } from 'react';
import { JOB_STATES, type JobState } from '../../../src/domain/job-states.ts';
import { jobTitle } from '../../../src/text/job-title.ts';
import type { JobWithCancel } from '../api-client.ts';
import { JobStateBadge } from '../components/badges.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { ProgressBar } from '../components/progress-bar.tsx';
import { TargetLink } from '../components/target-link.tsx';
import { formatTime } from '../format-time.ts';
import { Link } from '../router.tsx';
import { useResource } from '../use-resource.ts';

export function JobsPage() {
  const [state, setState] = useState<JobState | ''>('');
  const jobs = useResource<{ jobs: JobWithCancel[] }>(`/jobs?limit=200${state ? `&state=${state}` : ''}`, {
    refreshMs: 2000,
  });
  return (
    <section>
      <h1>Jobs</h1>
      <div className="filters">
        <div className="field">
          <label htmlFor="job-state">State</label>
          <select id="job-state" value={state} onChange={(e) => setState(e.target.value as JobState | '')}>
            <option value="">any</option>
            {JOB_STATES.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </div>
      </div>
      <ErrorMessage error={jobs.error} />
      {jobs.data && jobs.data.jobs.length === 0 && <p className="muted">No jobs.</p>}
      <div className="table-wrap">
        <table className="stack">
          <thead>
            <tr>
              <th scope="col">Job</th>
              <th scope="col">Target</th>
              <th scope="col">State</th>
              <th scope="col">Progress</th>
              <th scope="col">By</th>
              <th scope="col">Created</th>
              <th scope="col">Finished</th>
            </tr>
          </thead>
          <tbody>
            {(jobs.data?.jobs ?? []).map((job) => (
              <tr key={job.id}>
                <td>
                  <Link to={`/jobs/${job.id}`}>{jobTitle(job)}</Link>
                </td>
                <td data-label="Target">
                  <TargetLink type={job.targetType} id={job.targetId} />
                </td>
                <td data-label="State">
                  <JobStateBadge state={job.state} />
                </td>
                <td data-label="Progress">
                  <ProgressBar value={job.progress} label={`${jobTitle(job)} progress`} state={job.state} />
                </td>
                <td data-label="By">{job.createdBy}</td>
                <td data-label="Created">{formatTime(job.createdAt)}</td>
                <td data-label="Finished">{formatTime(job.finishedAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
