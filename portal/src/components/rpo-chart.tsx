import { formatDuration } from '../format-time.ts';

export interface RpoRow {
  id: string;
  name: string;
  /** Age of the newest recovery point; null when the machine has none yet. */
  rpoSeconds: number | null;
  thresholdSeconds: number;
}

const ROW = 22;
const LABEL = 150;
const WIDTH = 640;

/** RPO per machine against its policy's threshold: one bar per machine, the threshold as a tick. */
export function RpoChart({ rows }: { rows: RpoRow[] }) {
  if (rows.length === 0) return <p className="muted">No protected machines yet: nothing to measure.</p>;
  const max = Math.max(1, ...rows.map((r) => Math.max(r.rpoSeconds ?? 0, r.thresholdSeconds))) * 1.1;
  const plot = WIDTH - LABEL - 100;
  const x = (seconds: number) => LABEL + (seconds / max) * plot;
  const late = rows.filter((r) => r.rpoSeconds === null || r.rpoSeconds > r.thresholdSeconds).length;
  const height = rows.length * ROW + 24;
  return (
    <figure className="chart">
      <svg
        viewBox={`0 0 ${WIDTH} ${height}`}
        width={WIDTH}
        height={height}
        role="img"
        aria-label={`RPO per machine: ${rows.length - late} of ${rows.length} within their threshold`}
      >
        {rows.map((r, i) => {
          const y = i * ROW;
          const over = r.rpoSeconds === null || r.rpoSeconds > r.thresholdSeconds;
          return (
            <g key={r.id} className={over ? 'rpo-over' : 'rpo-ok'}>
              <title>
                {`${r.name}: RPO ${r.rpoSeconds === null ? 'no recovery point yet' : formatDuration(r.rpoSeconds)}, threshold ${formatDuration(r.thresholdSeconds)}`}
              </title>
              <text x={LABEL - 8} y={y + 15} textAnchor="end" className="chart-label">
                {r.name.length > 20 ? `${r.name.slice(0, 19)}…` : r.name}
              </text>
              <rect
                x={LABEL}
                y={y + 4}
                height={ROW - 8}
                width={Math.max(2, x(r.rpoSeconds ?? max) - LABEL)}
              />
              <line
                x1={x(r.thresholdSeconds)}
                x2={x(r.thresholdSeconds)}
                y1={y + 1}
                y2={y + ROW - 1}
                className="threshold"
              />
              <text x={WIDTH - 92} y={y + 15} className="chart-value">
                {r.rpoSeconds === null ? 'none' : formatDuration(r.rpoSeconds)}
              </text>
            </g>
          );
        })}
        <text x={LABEL} y={height - 6} className="chart-axis">
          0
        </text>
        <text x={LABEL + plot} y={height - 6} textAnchor="end" className="chart-axis">
          {formatDuration(max)}
        </text>
      </svg>
      <figcaption className="muted small">
        Bars: age of the newest recovery point. Ticks: the policy's RPO threshold. Red: over the threshold or
        no point yet.
      </figcaption>
    </figure>
  );
}
