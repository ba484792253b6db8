import { useMemo, useState, type WheelEvent } from 'react';
import type { RecoveryPoint } from '../../../src/domain/model.ts';
import { formatDuration, formatTime } from '../format-time.ts';
import { newestFirst } from '../operations.ts';

const WIDTH = 800;
const HEIGHT = 120;
const PAD = 12;
const ROWS = [
  { key: 'crash', label: 'crash-consistent', y: 30 },
  { key: 'app', label: 'app-consistent', y: 58 },
  { key: 'multi', label: 'multi-machine', y: 86 },
] as const;

function rowOf(p: RecoveryPoint): (typeof ROWS)[number] {
  if (p.groupPointId) return ROWS[2];
  return p.type === 'app-consistent' ? ROWS[1] : ROWS[0];
}

const HOUR = 3_600_000;

/**
 * Recovery points on a time axis, one row per kind (crash-consistent,
 * app-consistent, multi-machine). Zoom with the buttons or the wheel; click a
 * point, or use the list below (keyboard), to pick it.
 */
export function RecoveryPointTimeline({
  points,
  selectedId,
  onSelect,
}: {
  points: RecoveryPoint[];
  selectedId: string | null;
  onSelect: (id: string) => void;
}) {
  const times = useMemo(() => points.map((p) => Date.parse(p.time)), [points]);
  const now = Date.now();
  const earliest = times.length > 0 ? Math.min(...times) : now - HOUR;
  const full = { start: Math.min(earliest, now - HOUR), end: now };
  const [view, setView] = useState<{ start: number; end: number } | null>(null);
  const { start, end } = view ?? full;
  const span = Math.max(1000, end - start);
  const x = (t: number) => PAD + ((t - start) / span) * (WIDTH - 2 * PAD);

  const zoom = (factor: number, centre = start + span / 2) => {
    const nextSpan = Math.min(full.end - full.start, Math.max(60_000, span * factor));
    let s = centre - (centre - start) * (nextSpan / span);
    s = Math.max(full.start, Math.min(s, full.end - nextSpan));
    setView({ start: s, end: s + nextSpan });
  };
  const onWheel = (event: WheelEvent<SVGSVGElement>) => {
    const box = event.currentTarget.getBoundingClientRect();
    const ratio = (event.clientX - box.left) / box.width;
    zoom(event.deltaY < 0 ? 0.7 : 1 / 0.7, start + ratio * span);
  };

  const visible = points.filter((_, i) => times[i]! >= start && times[i]! <= end);
  const sorted = useMemo(() => [...points].sort(newestFirst), [points]);

  return (
    <div className="timeline">
      <div className="toolbar" role="toolbar" aria-label="Timeline zoom">
        <button type="button" onClick={() => zoom(0.5)}>
          Zoom in
        </button>
        <button type="button" onClick={() => zoom(2)}>
          Zoom out
        </button>
        <button type="button" onClick={() => setView({ start: now - HOUR, end: now })}>
          Last hour
        </button>
        <button
          type="button"
          onClick={() => setView({ start: Math.max(full.start, now - 24 * HOUR), end: now })}
        >
          Last 24 h
        </button>
        <button type="button" onClick={() => setView(null)}>
          All
        </button>
        <span className="muted small">
          {formatTime(new Date(start).toISOString())} – {formatTime(new Date(end).toISOString())} (
          {formatDuration(span / 1000)})
        </span>
      </div>
      <svg
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        width="100%"
        className="timeline-svg"
        onWheel={onWheel}
        role="img"
        aria-label={`${points.length} recovery points; ${visible.length} in view`}
      >
        {ROWS.map((r) => (
          <g key={r.key}>
            <line x1={PAD} x2={WIDTH - PAD} y1={r.y} y2={r.y} className="timeline-row" />
            <text x={PAD} y={r.y - 8} className="chart-axis">
              {r.label}
            </text>
          </g>
        ))}
        {visible.map((p) => {
          const row = rowOf(p);
          const cx = x(Date.parse(p.time));
          const selected = p.id === selectedId;
          return (
            // biome-ignore lint/a11y/noStaticElementInteractions: the list below the chart is the keyboard path to the same choice
            <g
              key={p.id}
              className={`point point-${row.key}${selected ? ' selected' : ''}`}
              onClick={() => onSelect(p.id)}
            >
              <title>{`${formatTime(p.time)} · ${p.type}${p.groupPointId ? ' · multi-machine' : ''}${p.processed ? '' : ' · not yet processed'}`}</title>
              {row.key === 'app' ? (
                <rect
                  x={cx - 5}
                  y={row.y - 5}
                  width={10}
                  height={10}
                  transform={`rotate(45 ${cx} ${row.y})`}
                />
              ) : (
                <circle cx={cx} cy={row.y} r={selected ? 7 : 5} />
              )}
            </g>
          );
        })}
        <text x={PAD} y={HEIGHT - 4} className="chart-axis">
          {new Date(start).toLocaleTimeString()}
        </text>
        <text x={WIDTH - PAD} y={HEIGHT - 4} textAnchor="end" className="chart-axis">
          {new Date(end).toLocaleTimeString()}
        </text>
      </svg>
      {points.length === 0 ? (
        <p className="muted">No recovery points yet: they appear once replication is running.</p>
      ) : (
        <div className="field">
          <label htmlFor="point-list">Recovery point</label>
          <select
            id="point-list"
            value={selectedId ?? ''}
            onChange={(e) => e.target.value && onSelect(e.target.value)}
          >
            <option value="">— pick a point —</option>
            {sorted.map((p) => (
              <option key={p.id} value={p.id}>
                {formatTime(p.time)} · {p.type}
                {p.groupPointId ? ' · multi-machine' : ''}
                {p.processed ? '' : ' · not processed'}
              </option>
            ))}
          </select>
        </div>
      )}
    </div>
  );
}
