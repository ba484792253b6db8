import { useState } from 'react';
import type { LifecycleOperation } from '../../../src/domain/lifecycle.ts';
import type { Host, Machine, Policy, RecoveryPoint, Site } from '../../../src/domain/model.ts';
import { HealthBadge, isInProgress, StateBadge } from '../components/badges.tsx';
import { DrillPanel } from '../components/drill-panel.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { MirrorPanel } from '../components/mirror-panel.tsx';
import { OperationDialog } from '../components/operation-dialog.tsx';
import { PointAccessHint } from '../components/point-access-hint.tsx';
import { ProofCard } from '../components/proof-card.tsx';
import { RecoveryPointTimeline } from '../components/recovery-point-timeline.tsx';
import { RecoverySettingsForm } from '../components/recovery-settings-form.tsx';
import { ReplicationHistory } from '../components/replication-history.tsx';
import { ServerEnrolmentDialog } from '../components/server-enrolment-dialog.tsx';
import { ServerLinkPanel } from '../components/server-link-panel.tsx';
import { formatBytes, formatTime } from '../format-time.ts';
import { machineKindText } from '../machine-kind.ts';
import { OPERATION_TEXT } from '../operations.ts';
import { Link } from '../router.tsx';
import { canOperate, useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';

type PresentedMachine = Machine & { allowedOperations: LifecycleOperation[] };

interface Validation {
  valid: boolean;
  problems: { field: string; code: string; message: string }[];
}

export function MachinePage({ id }: { id: string }) {
  const { role } = useSession();
  const path = `/machines/${encodeURIComponent(id)}`;
  const machine = useResource<PresentedMachine>(path, { refreshMs: 5000 });
  const points = useResource<{ recoveryPoints: RecoveryPoint[] }>(`${path}/recovery-points`, {
    refreshMs: 5000,
  });
  const validation = useResource<Validation>(`${path}/validation`);
  const hosts = useResource<{ hosts: Host[] }>('/hosts');
  const sites = useResource<{ sites: Site[] }>('/sites');
  const policies = useResource<{ policies: Policy[] }>('/policies');
  const [selectedPoint, setSelectedPoint] = useState<string | null>(null);
  const [operation, setOperation] = useState<LifecycleOperation | null>(null);
  const [enrolling, setEnrolling] = useState(false);

  if (machine.error) {
    return (
      <section>
        <h1>Machine</h1>
        <ErrorMessage error={machine.error} />
        <Link to="/machines">All machines</Link>
      </section>
    );
  }
  const m = machine.data;
  if (!m) return <p aria-busy="true">Loading…</p>;
  const hostList = hosts.data?.hosts ?? [];
  const hostName = (hostId: string | null): string =>
    hostId === null ? '—' : (hostList.find((h) => h.id === hostId)?.name ?? hostId);
  const policy = policies.data?.policies.find((p) => p.id === m.policyId);
  const pointList = points.data?.recoveryPoints ?? [];
  const newest = pointList.reduce<string | null>((a, p) => (a === null || p.time > a ? p.time : a), null);
  const operator = canOperate(role);
  const chosenPoint = pointList.find((p) => p.id === selectedPoint);

  return (
    <section className="machine">
      <p className="crumbs">
        <Link to="/machines">Machines</Link> /
      </p>
      <h1>
        {m.name} <StateBadge state={m.state} /> <HealthBadge health={m.health} />
      </h1>
      {m.currentJobId && (
        <p className="notice" role="status">
          {isInProgress(m.state) ? `${m.state}: ` : ''}
          <Link to={`/jobs/${m.currentJobId}`}>follow the running job</Link>
        </p>
      )}
      {operator && (
        <fieldset className="actions">
          <legend className="sr-only">Actions</legend>
          {m.allowedOperations.length === 0 && (
            <span className="muted">No operation is possible in this state.</span>
          )}
          {m.allowedOperations.map((op) => (
            <button
              key={op}
              type="button"
              className={op === 'failover' ? 'danger' : undefined}
              data-operation={op}
              onClick={() => setOperation(op)}
            >
              {OPERATION_TEXT[op].title}…
            </button>
          ))}
        </fieldset>
      )}
      <div className="grid">
        <DrillPanel
          machine={m}
          hostName={hostName}
          {...(operator && m.allowedOperations.includes('cleanup-test-failover')
            ? { onCleanup: () => setOperation('cleanup-test-failover') }
            : {})}
        />
        <article className="card">
          <h2>Replication</h2>
          <dl className="facts">
            <dt>Health</dt>
            <dd>
              <HealthBadge health={m.health} />
            </dd>
            <dt>Policy</dt>
            <dd>
              {policy
                ? `${policy.name} (RPO threshold ${Math.round(policy.rpoThresholdSeconds / 60)} min)`
                : 'none'}
            </dd>
            <dt>Newest recovery point</dt>
            <dd>{newest ? formatTime(newest) : 'none yet'}</dd>
            <dt>Primary host</dt>
            <dd>{hostName(m.primaryHostId)}</dd>
            <dt>Recovery host</dt>
            <dd>{hostName(m.recoveryHostId)}</dd>
            <dt>Running on</dt>
            <dd>{hostName(m.activeHostId)}</dd>
            <dt>Kind</dt>
            <dd data-testid="machine-kind">{machineKindText(m)}</dd>
            <dt>OS family</dt>
            <dd>{m.osFamily}</dd>
            <dt>Consistency group</dt>
            <dd>{m.groupId ?? 'none'}</dd>
            {m.importedFrom && (
              <>
                <dt>Imported from</dt>
                <dd data-testid="imported-from">
                  libvirt domain <code>{m.importedFrom.domain}</code> on <code>{m.importedFrom.uri}</code>,{' '}
                  {formatTime(m.importedFrom.importedAt)}
                </dd>
              </>
            )}
          </dl>
        </article>
        <article className="card">
          <h2>Disks</h2>
          <div className="table-wrap">
            <table className="stack">
              <thead>
                <tr>
                  <th scope="col">Disk</th>
                  <th scope="col">Size</th>
                  <th scope="col">Source</th>
                  <th scope="col">Snapshots</th>
                </tr>
              </thead>
              <tbody>
                {m.disks.map((d) => (
                  <tr key={d.id}>
                    <td>{d.id}</td>
                    <td data-label="Size">{formatBytes(d.sizeBytes)}</td>
                    <td data-label="Source">
                      <code>{d.source}</code>
                    </td>
                    <td data-label="Snapshots">{d.hasSnapshots ? 'yes (reprotect refuses)' : 'no'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </article>
        <ProofCard target={{ kind: 'machine', id: m.id, name: m.name }} />
        {m.replication?.mirror && <MirrorPanel mirror={m.replication.mirror} />}
        {m.server && (
          <ServerLinkPanel machine={m} {...(operator ? { onNewEnrolment: () => setEnrolling(true) } : {})} />
        )}
        {m.replication && (
          <article className="card wide">
            <h2>Replication over time</h2>
            <ReplicationHistory machineId={m.id} />
          </article>
        )}
        <article className="card wide">
          <h2>Recovery points</h2>
          <RecoveryPointTimeline points={pointList} selectedId={selectedPoint} onSelect={setSelectedPoint} />
          {operator && chosenPoint && <PointAccessHint machine={m} point={chosenPoint} />}
        </article>
        <article className="card wide">
          <h2>Recovery settings</h2>
          {validation.data && (
            <p className={validation.data.valid ? 'ok' : 'warning'} role="status">
              {validation.data.valid
                ? 'Ready for failover: the recovery settings pass every check.'
                : `Not ready for failover: ${validation.data.problems.length} problem${validation.data.problems.length === 1 ? '' : 's'}, shown at their fields.`}
            </p>
          )}
          <RecoverySettingsForm
            machine={m}
            problems={validation.data?.problems ?? []}
            editable={operator}
            onSaved={() => {
              machine.reload();
              validation.reload();
            }}
          />
        </article>
      </div>
      {enrolling && <ServerEnrolmentDialog machine={m} onClose={() => setEnrolling(false)} />}
      {operation && (
        <OperationDialog
          operation={operation}
          onClose={() => setOperation(null)}
          context={{
            machine: m,
            points: pointList,
            selectedPointId: selectedPoint,
            hosts: hostList,
            sites: sites.data?.sites ?? [],
            policies: policies.data?.policies ?? [],
          }}
        />
      )}
    </section>
  );
}
