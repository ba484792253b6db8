import type { DrillState, TargetProof } from '../../../src/domain/drill.ts';
import { formatDuration, formatTime } from '../format-time.ts';
import { Link } from '../router.tsx';
import { Ago } from './ago.tsx';

/** The answer of GET /proofs by machine or plan id (one not in it was never drilled). */
export function proofsById(
  proofs: TargetProof[] | undefined,
  kind: 'machine' | 'plan',
): Map<string, TargetProof> {
  const byId = new Map<string, TargetProof>();
  for (const proof of proofs ?? []) {
    if (proof.target.kind === 'machine' && kind === 'machine') byId.set(proof.target.machineId, proof);
    if (proof.target.kind === 'plan' && kind === 'plan') byId.set(proof.target.planId, proof);
  }
  return byId;
}

/** A newer drill than the proof that did not pass: it says the proof may be stale. */
const BAD_ENDINGS: ReadonlySet<DrillState> = new Set(['failed', 'interrupted']);

function failedSince(proof: TargetProof | undefined) {
  const last = proof?.lastDrill;
  return last && last.id !== proof?.lastProven?.drillId && BAD_ENDINGS.has(last.state) ? last : null;
}

/** Green, red or grey: the one reading the badge and the counts share. */
export function proofKind(proof: TargetProof | undefined): 'proven' | 'failed' | 'none' {
  if (failedSince(proof)) return 'failed';
  return proof?.lastProven ? 'proven' : 'none';
}

/**
 * A machine's or plan's proof as a badge for lists: green only when a drill
 * passed, red when the newest drill failed, grey when none ever passed.
 */
export function ProofBadge({ proof }: { proof: TargetProof | undefined }) {
  const failed = failedSince(proof);
  const proven = proof?.lastProven;
  if (failed) {
    return (
      <span className="badge health-critical" data-proof="failed" title={failed.reason ?? undefined}>
        <span aria-hidden="true">▲</span> drill {failed.state}
      </span>
    );
  }
  if (proven) {
    return (
      <span className="badge health-healthy" data-proof="proven">
        <span aria-hidden="true">●</span> proven <Ago iso={proven.provenAt} />
      </span>
    );
  }
  return (
    <span className="badge" data-proof="none">
      <span aria-hidden="true">○</span> not proven
    </span>
  );
}

/**
 * The proof in a sentence, for a machine's or plan's page: "Proven 3 min ago ·
 * crash-consistent point of … · RTO 38 s", and a newer drill that failed with its reason.
 */
export function ProofSummary({ proof }: { proof: TargetProof | undefined }) {
  if (!proof) return <p className="muted">Loading…</p>;
  const p = proof.lastProven;
  const failed = failedSince(proof);
  const single = p?.points.length === 1 ? p.points[0]!.point : null;
  // A newer drill that failed comes first, and the older proof is no longer shown as good news.
  const failure = failed && (
    <p className="error-line" data-proof="failed" role="status">
      <strong>
        Last drill {failed.state} <Ago iso={failed.endedAt} />
      </strong>
      {failed.reason && `: ${failed.reason}`} · <Link to={`/drills/${failed.id}`}>its evidence</Link>
    </p>
  );
  return (
    <div data-testid="proof">
      {failure}
      {p ? (
        <p className={failed ? 'muted' : 'ok'} data-proof="proven">
          <strong>
            {failed ? 'Last proven' : 'Proven'} <Ago iso={p.provenAt} />
          </strong>
          {' · '}
          {single ? (
            <>
              {single.type} point of <time dateTime={single.time}>{formatTime(single.time)}</time>
            </>
          ) : (
            `${p.points.length} machines' points`
          )}
          {p.rtoSeconds !== null && ` · RTO ${formatDuration(p.rtoSeconds)}`}
          {' · '}
          {p.checks.passed} check{p.checks.passed === 1 ? '' : 's'} passed
          {p.checks.notChecked > 0 && `, ${p.checks.notChecked} not checked`} ·{' '}
          <Link to={`/drills/${p.drillId}`}>the drill</Link>
        </p>
      ) : (
        !failed && (
          <p className="warning" data-proof="none">
            <strong>Not proven</strong>: no drill has passed yet.
          </p>
        )
      )}
    </div>
  );
}
