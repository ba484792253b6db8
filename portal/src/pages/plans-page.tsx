import { useMemo, useState } from 'react';
import type { TargetProof } from '../../../src/domain/drill.ts';
import type { RecoveryPlan } from '../../../src/domain/model.ts';
import { Ago } from '../components/ago.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { EMPTY_PLAN, PlanEditor } from '../components/plan-editor.tsx';
import { PlanImportDialog } from '../components/plan-import-dialog.tsx';
import { ProofBadge, proofsById } from '../components/proof-badge.tsx';
import { formatTime } from '../format-time.ts';
import { Link, navigate } from '../router.tsx';
import { canOperate, useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';

export function PlansPage() {
  const { role } = useSession();
  const plans = useResource<{ plans: RecoveryPlan[] }>('/plans', { refreshMs: 10_000 });
  const [creating, setCreating] = useState(false);
  const [importing, setImporting] = useState(false);
  const proofs = useResource<{ proofs: TargetProof[] }>('/proofs', { refreshMs: 10_000 });
  const proofOf = useMemo(() => proofsById(proofs.data?.proofs, 'plan'), [proofs.data]);
  const list = plans.data?.plans ?? [];
  const operator = canOperate(role);
  return (
    <section>
      <h1>Recovery plans</h1>
      <p className="muted">
        A plan brings machines up group by group, with scripts and manual actions between the groups.
      </p>
      {operator && !creating && (
        <div className="toolbar">
          <button type="button" className="primary" onClick={() => setCreating(true)}>
            New plan
          </button>
          <button type="button" onClick={() => setImporting(true)}>
            Import…
          </button>
        </div>
      )}
      {creating && (
        <article className="card">
          <h2>New plan</h2>
          <PlanEditor
            initial={EMPTY_PLAN}
            planId={null}
            onSaved={(plan) => navigate(`/plans/${plan.id}`)}
            onCancel={() => setCreating(false)}
          />
        </article>
      )}
      {importing && <PlanImportDialog onClose={() => setImporting(false)} />}
      <ErrorMessage error={plans.error} />
      {plans.data && list.length === 0 && <p className="muted">No recovery plans yet.</p>}
      {list.length > 0 && (
        <div className="table-wrap">
          <table className="stack" data-testid="plans-table">
            <thead>
              <tr>
                <th scope="col">Plan</th>
                <th scope="col">Groups</th>
                <th scope="col">Machines</th>
                <th scope="col">Actions</th>
                <th scope="col">Changed</th>
                <th scope="col">Proof</th>
              </tr>
            </thead>
            <tbody>
              {list.map((p) => (
                <tr key={p.id} data-plan={p.name}>
                  <th scope="row">
                    <Link to={`/plans/${encodeURIComponent(p.id)}`}>{p.name}</Link>
                  </th>
                  <td data-label="Groups">{p.groups.length}</td>
                  <td data-label="Machines">{p.groups.reduce((n, g) => n + g.machineIds.length, 0)}</td>
                  <td data-label="Actions">
                    {p.groups.reduce((n, g) => n + g.before.length + g.after.length, 0)}
                  </td>
                  <td data-label="Changed" title={formatTime(p.updatedAt)}>
                    <Ago iso={p.updatedAt} />
                  </td>
                  <td data-label="Proof">{proofs.data && <ProofBadge proof={proofOf.get(p.id)} />}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
