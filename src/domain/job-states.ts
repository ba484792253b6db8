/**
 * A job's states. A plain module with no imports: the portal (built by Vite
 * from portal/) imports it as well as the vault, CLI and API.
 */

/** The states a job ends in: once in one, it changes no more. */
export const TERMINAL_JOB_STATES = ['succeeded', 'failed', 'cancelled'] as const;

/** Every state of a job, in the order a job goes through them. */
export const JOB_STATES = ['queued', 'running', 'waiting', ...TERMINAL_JOB_STATES] as const;

export type JobState = (typeof JOB_STATES)[number];
export type TerminalJobState = (typeof TERMINAL_JOB_STATES)[number];

const terminal: ReadonlySet<JobState> = new Set(TERMINAL_JOB_STATES);

export function isTerminalJobState(state: JobState): state is TerminalJobState {
  return terminal.has(state);
}
