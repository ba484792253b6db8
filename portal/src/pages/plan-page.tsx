import { useEffect, useState } from 'react';
import { isTerminalJobState } from '../../../src/domain/job-states.ts';
import type { Job, RecoveryPlan, RecoveryPlanAction, RecoveryPlanGroup } from '../../../src/domain/model.ts';
import type { RtoEstimate } from '../../../src/domain/recovery-plan-rto.ts';
import type { PlanDocument } from '../../../src/domain/recovery-plan-validation.ts';
import { jobTitle } from '../../../src/text/job-title.ts';
import type { PlanOperationAvailability } from '../../../src/vault/plans/plan-operation-availability.ts';
import type { PlanOperation } from '../../../src/vault/plans/plan-steps.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { Ago } from '../components/ago.tsx';
import { JobStateBadge } from '../components/badges.tsx';
import { ConfirmDialog } from '../components/confirm-dialog.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { PlanEditor } from '../components/plan-editor.tsx';
import { PlanExportDialog } from '../components/plan-export-dialog.tsx';
import { PlanOperationDialog } from '../components/plan-operation-dialog.tsx';
import { ProgressBar } from '../components/progress-bar.tsx';
import { ProofCard } from '../components/proof-card.tsx';
import { formatDuration, formatTime } from '../format-time.ts';
import { OPERATION_TEXT } from '../operations.ts';
import { Link, navigate } from '../router.tsx';
import { canOperate, useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';

/** A plan as GET /plans/:id presents it. */
export interface PresentedPlan extends RecoveryPlan {
  groups: (RecoveryPlanGroup & { machineNames: string[] })[];
  rtoEstimate: RtoEstimate;
  activeJobId: string | null;
  operations: PlanOperationAvailability[];
}

export function PlanPage({ id }: { id: string }) {
  const { api, role } = useSession();
  const path = `/plans/${encodeURIComponent(id)}`;
  const plan = useResource<PresentedPlan>(path, { refreshMs: 3000 });
  const runs = useResource<{ jobs: Job[] }>(
    plan.data ? `/jobs?targetId=${encodeURIComponent(plan.data.id)}&limit=10` : null,
    { refreshMs: 5000 },
  );
  const [operation, setOperation] = useState<PlanOperation | null>(null);
  const [editing, setEditing] = useState<PlanDocument | null>(null);
  const [exporting, setExporting] = useState(false);
  const [removing, setRemoving] = useState(false);
  const [error, setError] = useState<ApiError>();
  const operator = canOperate(role);

  if (!plan.data) {
    return (
      <section>
        <p className="crumbs">
          <Link to="/plans">Recovery plans</Link>
        </p>
        {plan.error ? <ErrorMessage error={plan.error} /> : <p className="loading-page">Loading…</p>}
      </section>
    );
  }
  const p = plan.data;
  const document = async () => api.get<PlanDocument>(`${path}/export`);
  const run = async (action: () => Promise<unknown>) => {
    setError(undefined);
    try {
      await action();
    } catch (e) {
      setError(asApiError(e));
    }
  };
  const machineCount = p.groups.reduce((n, g) => n + g.machineIds.length, 0);
  // Failback starts only from reverse protection: when it is offered, every member runs at the recovery site.
  const reverse = p.operations.some((o) => o.operation === 'failback' && o.allowed);

  return (
    <section>
      <p className="crumbs">
        <Link to="/plans">Recovery plans</Link>
      </p>
      <h1>
        Plan <span data-testid="plan-name">{p.name}</span>
      </h1>
      {p.description && <p className="wrap">{p.description}</p>}
      <dl className="facts">
        <dt>Groups</dt>
        <dd>{p.groups.length}</dd>
        <dt>Machines</dt>
        <dd>{machineCount}</dd>
        <dt>RTO estimate</dt>
        <dd data-testid="rto">
          <Rto
            estimate={p.rtoEstimate}
            names={new Map(p.groups.flatMap((g) => g.machineIds.map((m, i) => [m, g.machineNames[i]!])))}
          />
        </dd>
        <dt>Changed</dt>
        <dd title={formatTime(p.updatedAt)}>
          <Ago iso={p.updatedAt} />
        </dd>
      </dl>
      <ErrorMessage error={plan.error ?? error} />
      {p.activeJobId && (
        <ActiveJob
          jobId={p.activeJobId}
          operator={operator}
          onChange={() => {
            plan.reload();
            runs.reload();
          }}
        />
      )}
      {operator && !editing && (
        <PlanOperations
          operations={p.operations}
          reverse={reverse}
          running={p.activeJobId !== null}
          onChoose={setOperation}
        />
      )}
      <div className="toolbar">
        {operator && !editing && (
          <button
            type="button"
            disabled={p.activeJobId !== null}
            onClick={() => run(async () => setEditing(await document()))}
          >
            Edit
          </button>
        )}
        <button type="button" onClick={() => setExporting(true)}>
          Export…
        </button>
        {operator && !editing && (
          <button type="button" disabled={p.activeJobId !== null} onClick={() => setRemoving(true)}>
            Delete…
          </button>
        )}
      </div>
      {editing ? (
        <article className="card">
          <h2>Edit plan</h2>
          <PlanEditor
            initial={editing}
            planId={p.id}
            onSaved={() => {
              setEditing(null);
              plan.reload();
            }}
            onCancel={() => setEditing(null)}
          />
        </article>
      ) : (
        <ol className="plan-groups" data-testid="plan-groups">
          {p.groups.map((g, i) => (
            <li key={g.name} className="card" data-group={g.name}>
              <h2>
                {i + 1}. {g.name}
                {p.rtoEstimate.seconds !== null && p.rtoEstimate.groups[i] && (
                  <span className="muted small">
                    {' '}
                    · about {formatDuration(p.rtoEstimate.groups[i]!.seconds)}
                  </span>
                )}
              </h2>
              <Actions side="Before" actions={g.before} />
              <h3>Machines (start together)</h3>
              <ul className="plan-machines">
                {g.machineIds.map((m, j) => (
                  <li key={m}>
                    <Link to={`/machines/${encodeURIComponent(m)}`}>{g.machineNames[j]}</Link>
                  </li>
                ))}
              </ul>
              <Actions side="After" actions={g.after} />
            </li>
          ))}
        </ol>
      )}
      <div className="grid plan-proof">
        <ProofCard target={{ kind: 'plan', id: p.id, name: p.name }} />
      </div>
      <h2>Recent runs</h2>
      {runs.data && runs.data.jobs.length === 0 && <p className="muted">This plan has not run yet.</p>}
      {runs.data && runs.data.jobs.length > 0 && (
        <div className="table-wrap">
          <table className="stack" data-testid="plan-runs">
            <thead>
              <tr>
                <th scope="col">Operation</th>
                <th scope="col">State</th>
                <th scope="col">Started</th>
                <th scope="col">By</th>
              </tr>
            </thead>
            <tbody>
              {runs.data.jobs.map((job) => (
                <tr key={job.id}>
                  <th scope="row">
                    <Link to={`/jobs/${job.id}`}>{operationOf(job)}</Link>
                  </th>
                  <td data-label="State">
                    <JobStateBadge state={job.state} />
                  </td>
                  <td data-label="Started" title={formatTime(job.createdAt)}>
                    <Ago iso={job.createdAt} />
                  </td>
                  <td data-label="By">{job.createdBy}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {operation && (
        <PlanOperationDialog
          plan={p}
          operation={operation}
          reverse={reverse}
          onClose={() => setOperation(null)}
          onStarted={() => {
            setOperation(null);
            plan.reload();
            runs.reload();
          }}
        />
      )}
      {removing && (
        <ConfirmDialog
          title={`Delete plan ${p.name}`}
          action="Delete plan"
          onClose={() => setRemoving(false)}
          onConfirm={async () => {
            await api.request('DELETE', path);
            navigate('/plans');
          }}
        >
          <p>
            Delete plan <strong>{p.name}</strong>? Its machines are not touched.
          </p>
        </ConfirmDialog>
      )}
      {exporting && (
        <PlanExportDialog planPath={path} planName={p.name} onClose={() => setExporting(false)} />
      )}
    </section>
  );
}

/**
 * The operations the machines' states allow now as buttons; the others as
 * one line per reason ("Commit, Reprotect: web-01 is protected").
 */
function PlanOperations({
  operations,
  reverse,
  running,
  onChoose,
}: {
  operations: PlanOperationAvailability[];
  reverse: boolean;
  running: boolean;
  onChoose: (operation: PlanOperation) => void;
}) {
  const offered = operations.filter((o) => o.allowed);
  const reasons = new Map<string, PlanOperation[]>();
  for (const o of operations.filter((o) => !o.allowed)) {
    const named = o.blockedBy.slice(0, 3).map((b) => `${b.machineName} is ${b.state}`);
    const more = o.blockedBy.length - named.length;
    const why =
      o.blockedBy.length === 0
        ? 'the plan has no machines'
        : `${named.join(', ')}${more > 0 ? ` and ${more} more` : ''}`;
    reasons.set(why, [...(reasons.get(why) ?? []), o.operation]);
  }
  return (
    <>
      <div className="toolbar" data-testid="plan-operations">
        {offered.map(({ operation: o }) => (
          <button
            key={o}
            type="button"
            className={o === 'failover' ? 'danger' : undefined}
            disabled={running}
            title={o === 'failover' && reverse ? 'Unplanned failback to the primary site' : undefined}
            onClick={() => onChoose(o)}
          >
            {OPERATION_TEXT[o].title}…
          </button>
        ))}
        {offered.length === 0 && <span className="muted">No plan operation fits its machines now.</span>}
      </div>
      {reasons.size > 0 && (
        <ul className="not-offered muted small" data-testid="operations-not-offered">
          {[...reasons].map(([why, ops]) => (
            <li key={why}>
              {ops.map((o) => OPERATION_TEXT[o].title).join(', ')}: {why}
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

/** A plan job's operation in words (its input names it); a plan drill and older jobs by their kind, in words. */
function operationOf(job: Job): string {
  const operation = job.input.operation as PlanOperation | undefined;
  return operation && operation in OPERATION_TEXT ? OPERATION_TEXT[operation].title : jobTitle(job);
}

function Rto({ estimate, names }: { estimate: RtoEstimate; names: Map<string, string> }) {
  const missing = estimate.machinesWithoutHistory.map((m) => names.get(m) ?? m);
  // The whole plan as its last passing drill measured it: its order, actions and every machine up.
  const measured = estimate.measured && (
    <span className="small" data-measured-rto>
      {' '}
      · measured {formatDuration(estimate.measured.seconds)} by its last passing drill
    </span>
  );
  if (estimate.seconds === null) {
    return (
      <>
        <span className="muted">not measured yet: run a test failover or a drill of the plan</span>
        {measured}
      </>
    );
  }
  return (
    <>
      about {formatDuration(estimate.seconds)}
      {missing.length > 0 && (
        <span className="muted small"> (without {missing.join(', ')}: never failed over yet)</span>
      )}
      {measured}
    </>
  );
}

function Actions({ side, actions }: { side: 'Before' | 'After'; actions: RecoveryPlanAction[] }) {
  if (actions.length === 0) return null;
  return (
    <>
      <h3>{side} its machines</h3>
      <ol className="plan-action-list">
        {actions.map((a) => (
          <li key={a.name} data-action={a.name}>
            <span className="badge">{a.kind === 'manual' ? 'manual' : 'script'}</span>{' '}
            <strong>{a.name}</strong>
            {a.kind === 'manual' && <span className="wrap">: {a.text}</span>}
            {a.kind === 'script' && (
              <span>
                : runs <code>{a.script}</code>
                {a.timeoutSeconds !== null && ` (timeout ${formatDuration(a.timeoutSeconds)})`}
              </span>
            )}
            {a.kind === 'inline-script' && (
              <span className="warning"> holds an inline command, never run: name a registered script</span>
            )}
          </li>
        ))}
      </ol>
    </>
  );
}

/** The plan's running job: progress, its current step, and at a manual action the Resume button. */
function ActiveJob({
  jobId,
  operator,
  onChange,
}: {
  jobId: string;
  operator: boolean;
  onChange: () => void;
}) {
  const { api } = useSession();
  const job = useResource<Job>(`/jobs/${encodeURIComponent(jobId)}`, { refreshMs: 1500 });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const j = job.data;
  const ended = j !== undefined && isTerminalJobState(j.state);
  // The job's end changes the members' states and the runs list: show both now, not at their next poll.
  // biome-ignore lint/correctness/useExhaustiveDependencies: only the end matters, not a new onChange
  useEffect(() => {
    if (ended) onChange();
  }, [ended]);
  if (!j) return <ErrorMessage error={job.error} />;
  const step = j.steps.find((s) => s.state === 'running');
  const resume = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await api.post(`/jobs/${encodeURIComponent(jobId)}/resume`);
      job.reload();
      onChange();
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <article className="card active-job" data-testid="active-job" data-job-state={j.state}>
      <h2>
        <Link to={`/jobs/${j.id}`}>{operationOf(j)}</Link> <JobStateBadge state={j.state} />
      </h2>
      <ProgressBar value={j.progress} label={`${operationOf(j)} of the plan`} state={j.state} />
      {step && (
        <p>
          {step.title}
          {step.message && <span className="muted">: {step.message}</span>}
        </p>
      )}
      {j.state === 'waiting' && (
        <div className="notice" data-testid="manual-action">
          <p>
            <strong>Waiting at a manual action.</strong> Do what it asks, then resume the plan.
          </p>
          {operator ? (
            <button type="button" className="primary" onClick={resume} disabled={busy}>
              {busy ? 'Resuming…' : 'Resume'}
            </button>
          ) : (
            <p className="muted small">An operator resumes it.</p>
          )}
        </div>
      )}
      <ErrorMessage error={error} />
    </article>
  );
}
