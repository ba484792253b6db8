import { useEffect, useState } from 'react';
import type { ReplicationSnapshot } from '../../../src/domain/model.ts';
import { formatBytes, formatDuration } from '../format-time.ts';

/** Samples kept: ten minutes at the machine page's 5 s refresh. */
const KEEP = 120;

export interface ReplicationSample {
  at: number;
  throughput: number;
  pending: number;
  rpo: number | null;
}

/**
 * The vault keeps only the latest replication snapshot, so the page keeps a
 * bounded history of what it polled: one sample per new snapshot.
 */
export function useReplicationHistory(
  replication: ReplicationSnapshot | null | undefined,
): ReplicationSample[] {
  const [samples, setSamples] = useState<ReplicationSample[]>([]);
  const updatedAt = replication?.updatedAt;
  // biome-ignore lint/correctness/useExhaustiveDependencies: one sample per snapshot, keyed by its time
  useEffect(() => {
    if (!replication || !updatedAt) return;
    const at = Date.parse(updatedAt);
    setSamples((s) =>
      s.at(-1)?.at === at
        ? s
        : [
            ...s,
            {
              at,
              throughput: replication.throughputBytesPerSec,
              pending: replication.pendingBytes,
              rpo: replication.rpoSeconds,
            },
          ].slice(-KEEP),
    );
  }, [updatedAt]);
  return samples;
}

const W = 240;
const H = 56;

function Sparkline({
  title,
  values,
  format,
  testId,
}: {
  title: string;
  values: (number | null)[];
  format: (v: number) => string;
  testId: string;
}) {
  const known = values.filter((v): v is number => v !== null);
  const highest = known.length > 0 ? Math.max(...known) : 0;
  // The scale's top; an all-zero series draws flat along the bottom.
  const max = Math.max(highest, Number.MIN_VALUE);
  const last = known.at(-1);
  const step = values.length > 1 ? W / (values.length - 1) : W;
  const path = values
    .map((v, i) => (v === null ? null : `${i * step},${H - 4 - (v / max) * (H - 8)}`))
    .filter((p) => p !== null)
    .join(' ');
  return (
    <figure className="spark" data-testid={testId}>
      <figcaption>
        {title}: <strong>{last === undefined ? '—' : format(last)}</strong>
        <span className="muted small"> (highest {format(highest)})</span>
      </figcaption>
      <svg
        viewBox={`0 0 ${W} ${H}`}
        width="100%"
        height={H}
        preserveAspectRatio="none"
        role="img"
        aria-label={`${title} over the last ${values.length} samples; now ${last === undefined ? 'unknown' : format(last)}`}
      >
        <line x1={0} x2={W} y1={H - 4} y2={H - 4} className="timeline-row" />
        {known.length > 1 && <polyline points={path} className="spark-line" />}
      </svg>
    </figure>
  );
}

/** Throughput, bytes pending and RPO over the samples this page polled. */
export function ReplicationHistory({ samples }: { samples: ReplicationSample[] }) {
  if (samples.length === 0) {
    return <p className="muted">No replication figures yet: they appear while the machine replicates.</p>;
  }
  const minutes = (samples.at(-1)!.at - samples[0]!.at) / 1000;
  return (
    <div className="replication-history">
      <div className="sparks">
        <Sparkline
          title="Throughput"
          testId="spark-throughput"
          values={samples.map((s) => s.throughput)}
          format={(v) => `${formatBytes(v)}/s`}
        />
        <Sparkline
          title="Pending"
          testId="spark-pending"
          values={samples.map((s) => s.pending)}
          format={formatBytes}
        />
        <Sparkline
          title="RPO"
          testId="spark-rpo"
          values={samples.map((s) => s.rpo)}
          format={formatDuration}
        />
      </div>
      <p className="muted small">
        Since this page opened ({samples.length} sample{samples.length === 1 ? '' : 's'} over{' '}
        {formatDuration(minutes)}, kept for the last {KEEP}): the vault keeps only the latest figures.
      </p>
    </div>
  );
}
