import { useState } from 'react';
import type { DrillRun, TargetProof } from '../../../src/domain/drill.ts';
import { Link, navigate } from '../router.tsx';
import { canOperate, useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';
import { DrillHistory } from './drill-history.tsx';
import { ProofSummary } from './proof-badge.tsx';
import { type DrillTargetRef, RunDrillDialog } from './run-drill-dialog.tsx';

const HISTORY = 10;

/**
 * A machine's or plan's proof of recoverability and its recent drills; an
 * operator runs a drill of it from here and follows it on its page.
 */
export function ProofCard({ target }: { target: DrillTargetRef }) {
  const { role } = useSession();
  const ref = encodeURIComponent(target.id);
  const proof = useResource<TargetProof>(`/${target.kind === 'plan' ? 'plans' : 'machines'}/${ref}/proof`, {
    refreshMs: 5000,
  });
  const drills = useResource<{ drills: DrillRun[] }>(`/drills?${target.kind}=${ref}&limit=${HISTORY}`, {
    refreshMs: 5000,
  });
  const [running, setRunning] = useState(false);
  return (
    <article className="card wide" data-testid="proof-card">
      <h2>Proof of recoverability</h2>
      <ProofSummary proof={proof.data} />
      {canOperate(role) && (
        <p>
          <button type="button" data-testid="run-drill" onClick={() => setRunning(true)}>
            Run drill now…
          </button>
        </p>
      )}
      <h3>Drills</h3>
      {drills.data ? <DrillHistory drills={drills.data.drills} /> : <p className="muted">Loading…</p>}
      {drills.data && drills.data.drills.length === HISTORY && (
        <p className="small">
          <Link to="/drills">All drills</Link>
        </p>
      )}
      {running && (
        <RunDrillDialog
          target={target}
          onClose={() => setRunning(false)}
          onStarted={(drill) => navigate(`/drills/${drill.id}`)}
        />
      )}
    </article>
  );
}
