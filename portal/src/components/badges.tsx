import {
  type JobState,
  type MachineState,
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
