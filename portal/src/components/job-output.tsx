import type { ReactNode } from 'react';
import type { RecoveryPointType } from '../../../src/domain/model.ts';
import { formatOutputNumber, labelOfKey } from '../../../src/text/human-units.ts';
import { formatTime } from '../format-time.ts';
import { POINT_OPTIONS } from '../operations.ts';
import { describePoint } from '../point-kinds.ts';
import { Link } from '../router.tsx';

/** The point a job's choose-point step wrote into its output (failover jobs and change-point). */
export interface ChosenPoint {
  id: string;
  time: string;
  type: RecoveryPointType;
  option?: string;
}

export function chosenPointOf(output: Record<string, unknown>): ChosenPoint | null {
  const p = output.recoveryPoint as Partial<ChosenPoint> | undefined;
  return p && typeof p.id === 'string' && typeof p.time === 'string' && typeof p.type === 'string'
    ? (p as ChosenPoint)
    : null;
}

/** "crash-consistent point of 5 Dec, 17:20:03 (Latest processed)": how people name a chosen point. */
export function nameOfChosenPoint(p: ChosenPoint): string {
  const option = POINT_OPTIONS.find((o) => o.value === p.option)?.title;
  const described = describePoint({ time: p.time, type: p.type, groupPointId: null, processed: true });
  return option ? `${described} (${option.toLowerCase()})` : described;
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

function present(key: string, value: unknown): ReactNode {
  if (value === null || value === undefined || value === '') return <span className="muted">—</span>;
  if (typeof value === 'number') return formatOutputNumber(key, value);
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  // A plan's step names the machine job it started: a link to follow, not an id to copy.
  if (key === 'jobId' && typeof value === 'string') return <Link to={`/jobs/${value}`}>open its job</Link>;
  if (typeof value === 'string') return ISO_TIME.test(value) ? formatTime(value) : value;
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v === 'string')) {
      // Console tails and file lists: lines as they are, bounded.
      return <pre className="log">{(value as string[]).slice(-40).join('\n')}</pre>;
    }
    return (
      <ol className="plain">
        {value.map((v, i) => (
          // biome-ignore lint/suspicious/noArrayIndexKey: output lists have no identity but their place
          <li key={i}>{present(key, v)}</li>
        ))}
      </ol>
    );
  }
  if (typeof value === 'object') return <Facts values={value as Record<string, unknown>} />;
  return String(value);
}

function Facts({ values }: { values: Record<string, unknown> }) {
  return (
    <dl className="facts">
      {Object.entries(values).map(([key, value]) => (
        <Fact key={key} name={key} value={value} />
      ))}
    </dl>
  );
}

function Fact({ name, value }: { name: string; value: unknown }) {
  const point = name === 'recoveryPoint' ? chosenPointOf({ recoveryPoint: value }) : null;
  const named = ID_KEY.test(name) ? nameOf(value) : undefined;
  if (named !== undefined) {
    // The record's name is its label: its facts go on without it.
    const { name: _, ...rest } = value as Record<string, unknown>;
    return (
      <>
        <dt>{named}</dt>
        <dd data-output={name}>
          <Facts values={rest} />
        </dd>
      </>
    );
  }
  return (
    <>
      <dt>{labelOfKey(name)}</dt>
      <dd data-output={name}>{point ? nameOfChosenPoint(point) : present(name, value)}</dd>
    </>
  );
}

/** Records kept by id (a plan's machines by machine id) are labelled by their name: people read names, not ids. */
const ID_KEY = /^[0-9a-f]{8}-[0-9a-f]{4}-/;

function nameOf(value: unknown): string | undefined {
  const name = (value as { name?: unknown } | null)?.name;
  return typeof value === 'object' && typeof name === 'string' ? name : undefined;
}

/** A job's results as labelled facts (times, sizes and durations in words), never raw JSON. */
export function JobOutput({ output }: { output: Record<string, unknown> }) {
  return <Facts values={output} />;
}
