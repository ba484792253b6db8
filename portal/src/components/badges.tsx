import {
  type JobState,
  type MachineState,
  type MirroredDiskState,
  type MirrorSnapshot,
  type ReplicationHealth,
  STABLE_STATES,
  type StepState,
} from '../../../src/domain/model.ts';

const STABLE = new Set<MachineState>(STABLE_STATES);

export function isInProgress(state: MachineState): boolean {
  return !STABLE.has(state);
}

export function StateBadge({ state }: { state: MachineState }) {
  return (
    <span className={`badge ${isInProgress(state) ? 'badge-busy' : 'badge-state'}`} data-state={state}>
      {state}
    </span>
  );
}

export function HealthBadge({ health }: { health: ReplicationHealth }) {
  return (
    <span className={`badge health-${health}`}>
      <span aria-hidden="true">{health === 'healthy' ? '●' : health === 'unknown' ? '○' : '▲'}</span> {health}
    </span>
  );
}

export function JobStateBadge({ state }: { state: JobState }) {
  return <span className={`badge job-${state}`}>{state}</span>;
}

export function StepStateBadge({ state }: { state: StepState }) {
  return <span className={`badge job-${state}`}>{state}</span>;
}

const MIRROR_TEXT: Record<MirroredDiskState['state'] | MirrorSnapshot['state'], string> = {
  armed: 'armed',
  copying: 'copying',
  syncing: 'syncing',
  'domain-off': 'domain off',
  'not-armed': 'not armed',
};

/**
 * A mirror's state: green only for `armed` (every write reaches Haven before
 * it completes); copying and syncing are busy, a domain that is off is
 * neutral, anything not armed is red.
 */
export function MirrorStateBadge({ state }: { state: MirroredDiskState['state'] | MirrorSnapshot['state'] }) {
  const look =
    state === 'armed'
      ? 'health-healthy'
      : state === 'not-armed'
        ? 'health-critical'
        : state === 'domain-off'
          ? 'badge-state'
          : 'badge-busy';
  return (
    <span className={`badge ${look}`} data-mirror-state={state}>
      <span aria-hidden="true">{state === 'armed' ? '●' : state === 'not-armed' ? '▲' : '○'}</span>{' '}
      {MIRROR_TEXT[state]}
    </span>
  );
}
