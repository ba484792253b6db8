import { useId, useState } from 'react';
import type { RecoveryPoint } from '../../../src/domain/model.ts';
import { newestFirst } from '../operations.ts';
import { describePoint, kindOf, POINT_KINDS } from '../point-kinds.ts';
import { Ago } from './ago.tsx';

/** Points offered per kind: the newest, or the nearest to the time searched for. */
const PER_KIND = 6;

/** `datetime-local` wants local time without a zone. */
function toLocalInput(ms: number): string {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 19);
}

/**
 * Chooses one recovery point out of hundreds: grouped by kind (app-consistent,
 * multi-machine, crash-consistent), a few per kind, nearest to a time the
 * operator types (else the newest). The chosen point always stays listed.
 */
export function PointPicker({
  points,
  value,
  onChange,
}: {
  points: RecoveryPoint[];
  value: string | undefined;
  onChange: (pointId: string) => void;
}) {
  const id = useId();
  const [near, setNear] = useState('');
  const target = near ? Date.parse(near) : Number.NaN;
  const searching = !Number.isNaN(target);
  const byKind = POINT_KINDS.map((kind) => {
    const all = points.filter((p) => kindOf(p) === kind.key).sort(newestFirst);
    const ordered = searching
      ? [...all].sort((a, b) => Math.abs(Date.parse(a.time) - target) - Math.abs(Date.parse(b.time) - target))
      : all;
    const offered = ordered.slice(0, PER_KIND);
    const chosen = all.find((p) => p.id === value);
    if (chosen && !offered.includes(chosen)) offered.push(chosen);
    return { kind, total: all.length, offered: offered.sort(newestFirst) };
  }).filter((g) => g.total > 0);

  return (
    <div className="point-picker" data-testid="point-picker">
      <div className="field">
        <label htmlFor={`${id}-near`}>Closest to</label>
        <div className="inline">
          <input
            id={`${id}-near`}
            type="datetime-local"
            step={1}
            value={near}
            max={toLocalInput(Date.now())}
            onChange={(e) => setNear(e.target.value)}
            aria-describedby={`${id}-near-hint`}
          />
          {near && (
            <button type="button" onClick={() => setNear('')}>
              Newest
            </button>
          )}
        </div>
        <p id={`${id}-near-hint`} className="hint">
          {points.length} points. Type a time to list the points nearest to it; empty: the newest of each
          kind.
        </p>
      </div>
      {byKind.length === 0 && <p className="muted">No recovery points yet.</p>}
      {byKind.map(({ kind, total, offered }) => (
        <fieldset key={kind.key} className="radios point-group" data-kind={kind.key}>
          <legend>
            {kind.label} <span className="muted small">({total})</span>
          </legend>
          {offered.map((p) => (
            <label key={p.id}>
              <input
                type="radio"
                name={`${id}-point`}
                value={p.id}
                checked={p.id === value}
                onChange={() => onChange(p.id)}
              />
              <span>
                {describePoint(p)}{' '}
                <span className="muted small">
                  (<Ago iso={p.time} />)
                </span>
              </span>
            </label>
          ))}
          {total > offered.length && (
            <p className="hint">
              {total - offered.length} more {searching ? 'further from that time' : 'older'}: type a time
              above to find them.
            </p>
          )}
        </fieldset>
      ))}
    </div>
  );
}
