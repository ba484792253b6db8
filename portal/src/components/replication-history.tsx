import { useState } from 'react';
import type {
  ReplicationHistory as History,
  ReplicationSample,
} from '../../../src/domain/replication-history.ts';
import { formatBytes, formatDuration, formatTime } from '../format-time.ts';
import { useResource } from '../use-resource.ts';
import { ErrorMessage } from './error-message.tsx';

/** The spans the vault keeps, each at its finest resolution. */
const RANGES = [
  { label: 'Last hour', seconds: 3600, resolution: 10 },
  { label: 'Last day', seconds: 86_400, resolution: 60 },
  { label: 'Last 30 days', seconds: 30 * 86_400, resolution: 600 },
] as const;

const W = 240;
const H = 56;

type Point = { at: number; value: number | null };

/**
 * Runs of the series as polylines, broken where a sample is missing (the
 * machine did not replicate then): a gap is not drawn as a straight ramp.
 */
function lines(points: Point[], start: number, end: number, resolutionMs: number, max: number): string[] {
  const runs: string[][] = [];
  let previous: number | null = null;
  for (const { at, value } of points) {
    if (value === null) {
      previous = null;
      continue;
    }
    const xy = `${(((at - start) / (end - start)) * W).toFixed(1)},${(H - 4 - (value / max) * (H - 8)).toFixed(1)}`;
    if (previous === null || at - previous > 2 * resolutionMs) runs.push([xy]);
    else runs.at(-1)!.push(xy);
    previous = at;
  }
  return runs.filter((r) => r.length > 1).map((r) => r.join(' '));
}

function Sparkline({
  title,
  points,
  start,
  end,
  resolutionMs,
  format,
  testId,
}: {
  title: string;
  points: Point[];
  start: number;
  end: number;
  resolutionMs: number;
  format: (v: number) => string;
  testId: string;
}) {
  const known = points.map((p) => p.value).filter((v): v is number => v !== null);
  const highest = known.length > 0 ? Math.max(...known) : 0;
  // The scale's top; an all-zero series draws flat along the bottom.
  const max = Math.max(highest, Number.MIN_VALUE);
  const last = known.at(-1);
  return (
    <figure className="spark" data-testid={testId} data-samples={points.length}>
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
        aria-label={`${title} over ${formatDuration((end - start) / 1000)}; now ${last === undefined ? 'unknown' : format(last)}`}
      >
        <line x1={0} x2={W} y1={H - 4} y2={H - 4} className="timeline-row" />
        {lines(points, start, end, resolutionMs, max).map((path) => (
          <polyline key={path} points={path} className="spark-line" />
        ))}
      </svg>
    </figure>
  );
}

/**
 * Throughput, bytes pending and RPO of a machine as the vault kept them
 * (history from before the page opened), refreshed while the page is open.
 */
export function ReplicationHistory({ machineId }: { machineId: string }) {
  const [range, setRange] = useState<(typeof RANGES)[number]>(RANGES[0]);
  // Fixed per range: a path that changed on every refresh would start the resource over.
  const [since, setSince] = useState(() => new Date(Date.now() - range.seconds * 1000).toISOString());
  const history = useResource<History>(
    `/machines/${encodeURIComponent(machineId)}/replication-history?since=${encodeURIComponent(since)}&resolution=${range.resolution}`,
    { refreshMs: 5000 },
  );
  const end = Date.now();
  const samples: ReplicationSample[] = (history.data?.samples ?? []).filter(
    (s) => Date.parse(s.at) >= end - range.seconds * 1000,
  );
  // The axis starts at the oldest sample kept, so a machine protected an hour ago fills the day's chart.
  const start =
    samples.length > 0 ? Math.min(Date.parse(samples[0]!.at), end - 60_000) : end - range.seconds * 1000;
  const series = (value: (s: ReplicationSample) => number | null): Point[] =>
    samples.map((s) => ({ at: Date.parse(s.at), value: value(s) }));
  const resolutionSeconds = history.data?.resolutionSeconds ?? 10;
  const chart = { start, end, resolutionMs: resolutionSeconds * 1000 };
  return (
    <div className="replication-history" data-testid="replication-history">
      <fieldset className="toolbar">
        <legend className="sr-only">Time range</legend>
        {RANGES.map((r) => (
          <button
            key={r.seconds}
            type="button"
            aria-pressed={r === range}
            onClick={() => {
              setRange(r);
              setSince(new Date(Date.now() - r.seconds * 1000).toISOString());
            }}
          >
            {r.label}
          </button>
        ))}
      </fieldset>
      <ErrorMessage error={history.error} />
      {!history.data ? (
        !history.error && <p className="muted">Loading the replication history…</p>
      ) : samples.length === 0 ? (
        <p className="muted">
          No replication figures in this range: the vault keeps them while the machine replicates.
        </p>
      ) : (
        <div className="sparks">
          <Sparkline
            title="Throughput"
            testId="spark-throughput"
            points={series((s) => s.throughputBytesPerSec)}
            format={(v) => `${formatBytes(v)}/s`}
            {...chart}
          />
          <Sparkline
            title="Pending"
            testId="spark-pending"
            points={series((s) => s.pendingBytes)}
            format={formatBytes}
            {...chart}
          />
          <Sparkline
            title="RPO"
            testId="spark-rpo"
            points={series((s) => s.rpoSeconds)}
            format={formatDuration}
            {...chart}
          />
        </div>
      )}
      <p className="muted small">
        {samples.length} sample{samples.length === 1 ? '' : 's'} of {formatDuration(resolutionSeconds)} over
        the {range.label.toLowerCase()} (drawn from {formatTime(new Date(start).toISOString())} to now), kept
        by the vault: throughput is each sample's mean, pending and RPO its worst.
      </p>
    </div>
  );
}
