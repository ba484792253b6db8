import { type KeyboardEvent, type RefObject, useEffect, useMemo, useRef, useState } from 'react';
import type { RecoveryPoint } from '../../../src/domain/model.ts';
import { formatDuration, formatTime } from '../format-time.ts';
import { describePoint, kindOf, POINT_KINDS, type PointKind } from '../point-kinds.ts';

/** Drawn in CSS pixels at the chart's real width, so text stays legible and thinning follows the screen. */
const DEFAULT_WIDTH = 800;
const HEIGHT = 136;
const PAD = 16;
const ROW_Y: Record<PointKind, number> = { app: 34, group: 70, crash: 106 };
/** Marks closer than this (pixels) merge into one, so a zoomed-out range shows clusters, not a smear. */
const MIN_GAP = 24;
const MIN_SPAN = 60_000;

interface Range {
  start: number;
  end: number;
}

/** One mark on the chart: a point, or a cluster of neighbours of one kind (thinned at this zoom). */
interface Mark {
  id: string;
  kind: PointKind;
  points: RecoveryPoint[];
  /** Where it is drawn: its oldest point's time, so points joining it at the newest end do not move it. */
  at: number;
}

const timeOf = (p: RecoveryPoint) => Date.parse(p.time);

/** The span the data covers, padded so the first and last points are not on the border. */
function extentOf(points: RecoveryPoint[]): Range {
  if (points.length === 0) {
    const now = Date.now();
    return { start: now - 3_600_000, end: now };
  }
  let start = Number.POSITIVE_INFINITY;
  let end = Number.NEGATIVE_INFINITY;
  for (const p of points) {
    const t = timeOf(p);
    if (t < start) start = t;
    if (t > end) end = t;
  }
  const pad = Math.max(MIN_SPAN, end - start) * 0.04;
  return { start: start - pad, end: end + pad };
}

/** A range of `span` around `centre`, kept inside `full`. */
function place(centre: number, span: number, full: Range): Range {
  const s = Math.min(span, full.end - full.start);
  const start = Math.max(full.start, Math.min(centre - s / 2, full.end - s));
  return { start, end: start + s };
}

function nearest(times: number[], t: number): number | undefined {
  let best: number | undefined;
  for (const x of times) if (best === undefined || Math.abs(x - t) < Math.abs(best - t)) best = x;
  return best;
}

/** Greedy left-to-right grouping per kind: stable as new points arrive at the newest end. */
function marksOf(points: RecoveryPoint[], range: Range, width: number): Mark[] {
  const span = range.end - range.start;
  const x = (t: number) => ((t - range.start) / span) * (width - 2 * PAD);
  const marks: Mark[] = [];
  for (const { key } of POINT_KINDS) {
    const row = points
      .filter((p) => kindOf(p) === key)
      .map((p) => ({ p, t: timeOf(p) }))
      .filter(({ t }) => t >= range.start && t <= range.end)
      .sort((a, b) => a.t - b.t || a.p.sequence - b.p.sequence);
    let current: { first: number; points: RecoveryPoint[]; at: number } | null = null;
    for (const { p, t } of row) {
      if (current && x(t) - x(current.first) < MIN_GAP) {
        current.points.push(p);
        continue;
      }
      if (current) marks.push(toMark(key, current));
      current = { first: t, points: [p], at: t };
    }
    if (current) marks.push(toMark(key, current));
  }
  return marks;
}

function toMark(kind: PointKind, c: { points: RecoveryPoint[]; at: number }): Mark {
  return { id: `${kind}:${c.points[0]!.id}`, kind, points: c.points, at: c.at };
}

/**
 * Recovery points on a time axis that follows the data, one row per kind
 * (app-consistent, multi-machine, crash-consistent). Neighbours closer than a
 * few pixels merge into a cluster (click or Enter zooms into it). While the
 * pointer is over the chart or focus is in it, what it shows is held: new
 * points are counted, not drawn, so nothing moves under the pointer. Keyboard:
 * Tab to the chart, arrows move between points (up/down change row), Enter
 * chooses, + and - zoom, Home/End go to the oldest/newest point.
 */
/** The element's width in CSS pixels, followed as the layout changes. */
function useWidth(ref: RefObject<HTMLDivElement | null>): number {
  const [width, setWidth] = useState(DEFAULT_WIDTH);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const observer = new ResizeObserver(() => setWidth(Math.max(240, Math.round(el.clientWidth))));
    observer.observe(el);
    return () => observer.disconnect();
  }, [ref]);
  return width;
}

export function RecoveryPointTimeline({
  points,
  selectedId,
  onSelect,
}: {
  points: RecoveryPoint[];
  selectedId: string | null;
  onSelect: (id: string) => void;
}) {
  const chartRef = useRef<HTMLDivElement>(null);
  const [held, setHeld] = useState<RecoveryPoint[] | null>(null);
  const width = useWidth(chartRef);
  const pointerInside = useRef(false);
  const focusInside = useRef(false);
  const shown = held ?? points;
  const full = useMemo(() => extentOf(shown), [shown]);
  const [view, setView] = useState<Range | null>(null);
  const range = view ? clampTo(view, full) : full;
  const span = range.end - range.start;
  const x = (t: number) => PAD + ((t - range.start) / span) * (width - 2 * PAD);
  const marks = marksOf(shown, range, width);
  const times = useMemo(() => shown.map(timeOf), [shown]);
  const [activeId, setActiveId] = useState<string | null>(null);
  const markRefs = useRef(new Map<string, SVGGElement>());
  const focusWanted = useRef(false);

  const selectedPoint = points.find((p) => p.id === selectedId) ?? null;
  const selectedMark = marks.find((m) => m.points.some((p) => p.id === selectedId));
  const active = marks.find((m) => m.id === activeId) ?? selectedMark ?? marks.at(-1);

  useEffect(() => {
    if (!focusWanted.current || !active) return;
    focusWanted.current = false;
    markRefs.current.get(active.id)?.focus();
  });

  const hold = () => setHeld((h) => h ?? points);
  const release = () => {
    if (!pointerInside.current && !focusInside.current) setHeld(null);
  };

  /** Shows `next`, or, when it holds no point, the same span around the point nearest its centre. */
  const show = (next: Range) => {
    const inside = times.some((t) => t >= next.start && t <= next.end);
    if (inside || times.length === 0) return setView(next);
    const centre = nearest(times, (next.start + next.end) / 2)!;
    setView(place(centre, next.end - next.start, full));
  };
  const zoom = (factor: number, anchor = active?.at ?? range.start + span / 2) => {
    const nextSpan = Math.max(MIN_SPAN, Math.min(full.end - full.start, span * factor));
    const start = anchor - (anchor - range.start) * (nextSpan / span);
    show(clampTo({ start, end: start + nextSpan }, full));
  };
  const pan = (direction: -1 | 1) => {
    const shift = (span / 2) * direction;
    const next = clampTo({ start: range.start + shift, end: range.end + shift }, full);
    const inside = times.some((t) => t >= next.start && t <= next.end);
    if (inside) return setView(next);
    // Nothing there: jump to the next point that way.
    const beyond = times.filter((t) => (direction > 0 ? t > range.end : t < range.start));
    if (beyond.length === 0) return;
    const target = direction > 0 ? Math.min(...beyond) : Math.max(...beyond);
    setView(place(target, span, full));
  };
  const zoomInto = (mark: Mark) => {
    const ts = mark.points.map(timeOf);
    const lo = Math.min(...ts);
    const hi = Math.max(...ts);
    const nextSpan = Math.max(MIN_SPAN, (hi - lo) * 1.5);
    setView(place((lo + hi) / 2, nextSpan, full));
    setActiveId(null);
  };
  const choose = (mark: Mark) => {
    if (mark.points.length > 1) {
      zoomInto(mark);
      focusWanted.current = true;
    } else onSelect(mark.points[0]!.id);
  };
  const onWheel = (event: WheelEvent, svg: SVGSVGElement) => {
    const box = svg.getBoundingClientRect();
    const ratio = (event.clientX - box.left) / box.width;
    zoom(event.deltaY < 0 ? 0.7 : 1 / 0.7, range.start + ratio * span);
  };
  // React's wheel listeners are passive, so they cannot keep the page from
  // scrolling: the chart listens itself, and the wheel only zooms there.
  const svgRef = useRef<SVGSVGElement>(null);
  const wheel = useRef(onWheel);
  wheel.current = onWheel;
  useEffect(() => {
    const svg = svgRef.current;
    if (!svg) return;
    const listener = (event: WheelEvent) => {
      event.preventDefault();
      wheel.current(event, svg);
    };
    svg.addEventListener('wheel', listener, { passive: false });
    return () => svg.removeEventListener('wheel', listener);
  }, []);

  const onKeyDown = (event: KeyboardEvent<HTMLDivElement>) => {
    if (!active) return;
    const move = (to: Mark | undefined) => {
      if (!to) return;
      setActiveId(to.id);
      focusWanted.current = true;
    };
    const sameRow = marks.filter((m) => m.kind === active.kind);
    const i = sameRow.indexOf(active);
    const byTime = [...marks].sort((a, b) => a.at - b.at);
    switch (event.key) {
      case 'ArrowRight':
      case 'ArrowLeft': {
        const next = sameRow[i + (event.key === 'ArrowRight' ? 1 : -1)];
        if (next) move(next);
        else {
          pan(event.key === 'ArrowRight' ? 1 : -1);
          focusWanted.current = true;
        }
        break;
      }
      case 'ArrowUp':
      case 'ArrowDown': {
        const rows = POINT_KINDS.map((k) => k.key).filter((k) => marks.some((m) => m.kind === k));
        const row = rows[rows.indexOf(active.kind) + (event.key === 'ArrowDown' ? 1 : -1)];
        const candidates = marks.filter((m) => m.kind === row);
        move(
          candidates.reduce<Mark | undefined>(
            (b, m) => (b === undefined || Math.abs(m.at - active.at) < Math.abs(b.at - active.at) ? m : b),
            undefined,
          ),
        );
        break;
      }
      case 'Home':
        move(byTime[0]);
        break;
      case 'End':
        move(byTime.at(-1));
        break;
      case 'Enter':
      case ' ':
        choose(active);
        break;
      case '+':
      case '=':
        zoom(0.5);
        focusWanted.current = true;
        break;
      case '-':
        zoom(2);
        focusWanted.current = true;
        break;
      default:
        return;
    }
    event.preventDefault();
  };

  const arrived = held ? points.length - held.length : 0;

  return (
    <section
      className="timeline"
      aria-label="Recovery point timeline"
      onPointerEnter={() => {
        pointerInside.current = true;
        hold();
      }}
      onPointerLeave={() => {
        pointerInside.current = false;
        release();
      }}
      onFocus={() => {
        focusInside.current = true;
        hold();
      }}
      onBlur={(event) => {
        if (event.currentTarget.contains(event.relatedTarget as Node | null)) return;
        focusInside.current = false;
        release();
      }}
      data-held={held ? 'true' : 'false'}
    >
      <div className="toolbar" role="toolbar" aria-label="Timeline zoom and pan">
        <button type="button" onClick={() => pan(-1)} aria-label="Earlier">
          ◀ Earlier
        </button>
        <button type="button" onClick={() => zoom(0.5)}>
          Zoom in
        </button>
        <button type="button" onClick={() => zoom(2)}>
          Zoom out
        </button>
        <button type="button" onClick={() => pan(1)} aria-label="Later">
          Later ▶
        </button>
        <button type="button" onClick={() => setView(null)}>
          All points
        </button>
        <span className="muted small" data-testid="timeline-range">
          {formatTime(new Date(range.start).toISOString())} – {formatTime(new Date(range.end).toISOString())}{' '}
          ({formatDuration(span / 1000)})
        </span>
      </div>
      <div
        ref={chartRef}
        role="listbox"
        aria-label={`Recovery points: ${shown.length}; ${marks.reduce((n, m) => n + m.points.length, 0)} in view. Arrow keys move, Enter chooses, + and - zoom.`}
        onKeyDown={onKeyDown}
      >
        <svg
          viewBox={`0 0 ${width} ${HEIGHT}`}
          height={HEIGHT}
          width="100%"
          className="timeline-svg"
          ref={svgRef}
          role="presentation"
        >
          {POINT_KINDS.map((k) => (
            <g key={k.key}>
              <line x1={PAD} x2={width - PAD} y1={ROW_Y[k.key]} y2={ROW_Y[k.key]} className="timeline-row" />
              <text x={PAD} y={ROW_Y[k.key] - 13} className="chart-axis">
                {k.label}
              </text>
            </g>
          ))}
          {marks.map((mark) => {
            const y = ROW_Y[mark.kind];
            const cx = x(mark.at);
            const single = mark.points.length === 1;
            // Clusters are drawn larger, their count inside.
            const size = single ? 10 : mark.kind === 'app' ? 15 : 20;
            const selected = mark.points.some((p) => p.id === selectedId);
            const label = single
              ? describePoint(mark.points[0]!)
              : `${mark.points.length} ${mark.kind} points, ${formatTime(mark.points[0]!.time)} to ${formatTime(mark.points.at(-1)!.time)}: Enter zooms in`;
            return (
              <g
                key={mark.id}
                id={`mark-${mark.id}`}
                ref={(el) => {
                  if (el) markRefs.current.set(mark.id, el);
                  else markRefs.current.delete(mark.id);
                }}
                role="option"
                aria-selected={selected}
                aria-label={label}
                tabIndex={mark === active ? 0 : -1}
                data-count={mark.points.length}
                data-point-id={single ? mark.points[0]!.id : undefined}
                className={`point point-${mark.kind}${selected ? ' selected' : ''}${single ? '' : ' cluster'}`}
                onClick={() => {
                  setActiveId(mark.id);
                  choose(mark);
                }}
                // A click chooses without taking focus: focus holds the chart, the pointer only while over it.
                onMouseDown={(event) => event.preventDefault()}
              >
                <title>{label}</title>
                {/* A wider invisible target than the mark itself: easier to hit, on a phone too. */}
                <rect x={cx - 11} y={y - 11} width={22} height={22} className="hit" />
                {mark.kind === 'app' ? (
                  <rect
                    x={cx - size / 2}
                    y={y - size / 2}
                    width={size}
                    height={size}
                    transform={`rotate(45 ${cx} ${y})`}
                  />
                ) : (
                  <circle cx={cx} cy={y} r={size / 2} />
                )}
                {!single && (
                  <text x={cx} y={y + 3.5} textAnchor="middle" className="cluster-count">
                    {mark.points.length}
                  </text>
                )}
              </g>
            );
          })}
          <text x={PAD} y={HEIGHT - 4} className="chart-axis">
            {new Date(range.start).toLocaleTimeString()}
          </text>
          <text x={width - PAD} y={HEIGHT - 4} textAnchor="end" className="chart-axis">
            {new Date(range.end).toLocaleTimeString()}
          </text>
        </svg>
      </div>
      {held && (
        <p className="muted small" role="status" data-testid="timeline-held">
          Held while you choose
          {arrived > 0 ? `: ${arrived} new point${arrived === 1 ? '' : 's'} not drawn yet` : ''}.
        </p>
      )}
      {points.length === 0 ? (
        <p className="muted">No recovery points yet: they appear once replication is running.</p>
      ) : (
        <p data-testid="chosen-point">
          {selectedPoint ? (
            <>
              Chosen: <strong>{describePoint(selectedPoint)}</strong> (offered as the custom point of the next
              operation)
            </>
          ) : (
            <span className="muted">
              Choose a point: click it, or Tab to the chart and use the arrow keys and Enter. Numbers are
              clusters: they zoom in.
            </span>
          )}
        </p>
      )}
    </section>
  );
}

/** `r` moved (not shrunk) to lie inside `full`, or `full` when it is wider. */
function clampTo(r: Range, full: Range): Range {
  const span = Math.min(r.end - r.start, full.end - full.start);
  const start = Math.max(full.start, Math.min(r.start, full.end - span));
  return { start, end: start + span };
}
