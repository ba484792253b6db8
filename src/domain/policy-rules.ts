/**
 * Replication policies (SPEC §3): the built-in automatic failback policy, the
 * policy proposed on first start, and the rules an operator's policy obeys.
 */
import { HavenError } from '../errors/index.ts';
import type { Policy } from './model.ts';
import type { Problem } from './problem.ts';

const MINUTE = 60;
const HOUR = 3600;
const DAY = 24 * HOUR;

/** App-consistent points quiesce the guest's applications; more often than this hurts the workload. */
export const MIN_APP_CONSISTENT_FREQUENCY_SECONDS = 5 * MINUTE;
/** Longest retention window (ASR's): the journal grows with it. */
export const MAX_RETENTION_SECONDS = 15 * DAY;
export const MAX_POLICY_NAME_LENGTH = 100;

export type PolicyInput = Pick<
  Policy,
  'name' | 'rpoThresholdSeconds' | 'retentionSeconds' | 'appConsistentFrequencySeconds'
>;

/** Seed 003's automatic failback policy: fixed values, never editable. */
export const AUTOMATIC_FAILBACK_POLICY: Readonly<Omit<Policy, 'createdAt'>> = Object.freeze({
  id: 'automatic-failback',
  name: 'automatic-failback',
  rpoThresholdSeconds: 15 * MINUTE,
  retentionSeconds: 24 * HOUR,
  appConsistentFrequencySeconds: 60 * MINUTE,
  builtIn: true,
});

/** What a new vault proposes; the operator may edit or replace it. */
export const DEFAULT_POLICY: Readonly<Omit<Policy, 'id' | 'createdAt'>> = Object.freeze({
  name: 'default',
  rpoThresholdSeconds: 15 * MINUTE,
  retentionSeconds: 24 * HOUR,
  appConsistentFrequencySeconds: 4 * HOUR,
  builtIn: false,
});

/** Every problem with a policy's settings, field by field. */
export function validatePolicy(input: PolicyInput): Problem[] {
  const problems: Problem[] = [];
  const add = (field: keyof PolicyInput, code: Problem['code'], message: string) =>
    problems.push({ field, code, message });
  const { rpoThresholdSeconds: rpo, retentionSeconds: retention, appConsistentFrequencySeconds: app } = input;

  const name = input.name.trim();
  if (name === '') add('name', 'required', 'Policy name is required');
  else if (name.length > MAX_POLICY_NAME_LENGTH) {
    add('name', 'too_long', `Policy name has ${name.length} characters; at most ${MAX_POLICY_NAME_LENGTH}`);
  }

  const rpoOk = Number.isInteger(rpo) && rpo > 0;
  if (!Number.isInteger(rpo))
    add('rpoThresholdSeconds', 'not_integer', `RPO threshold must be whole seconds, got ${rpo}`);
  else if (rpo <= 0)
    add('rpoThresholdSeconds', 'out_of_range', `RPO threshold must be positive, got ${rpo} s`);

  const retentionOk = Number.isInteger(retention) && retention > 0 && retention <= MAX_RETENTION_SECONDS;
  if (!Number.isInteger(retention)) {
    add('retentionSeconds', 'not_integer', `Retention must be whole seconds, got ${retention}`);
  } else if (retention <= 0 || retention > MAX_RETENTION_SECONDS) {
    add(
      'retentionSeconds',
      'out_of_range',
      `Retention must be 1 s–${MAX_RETENTION_SECONDS / DAY} days, got ${retention} s`,
    );
  } else if (rpoOk && retention < rpo) {
    add(
      'retentionSeconds',
      'out_of_range',
      `Retention (${retention} s) is shorter than the RPO threshold (${rpo} s): points would expire before the alert`,
    );
  }

  if (!Number.isInteger(app)) {
    add(
      'appConsistentFrequencySeconds',
      'not_integer',
      `App-consistent frequency must be whole seconds, got ${app}`,
    );
  } else if (app !== 0 && (app < MIN_APP_CONSISTENT_FREQUENCY_SECONDS || (retentionOk && app > retention))) {
    add(
      'appConsistentFrequencySeconds',
      'out_of_range',
      `App-consistent frequency must be 0 (never) or from ${MIN_APP_CONSISTENT_FREQUENCY_SECONDS} s up to the retention` +
        ` (${retentionOk ? `${retention} s` : 'invalid'}), got ${app} s`,
    );
  }
  return problems;
}

/** Throw one 'validation_failed' error with every problem of the policy, or return. */
export function assertValidPolicy(input: PolicyInput): void {
  const problems = validatePolicy(input);
  if (problems.length === 0) return;
  const list = problems.map((p) => `${p.field}: ${p.message}`).join('; ');
  throw new HavenError('validation_failed', `Policy '${input.name}' is not valid: ${list}`, { problems });
}

/** Built-in policies are fixed (seed 003): refuse editing or deleting them. */
export function assertEditable(
  policy: Pick<Policy, 'id' | 'name' | 'builtIn'>,
  action: 'edit' | 'delete' = 'edit',
): void {
  if (!policy.builtIn) return;
  throw new HavenError(
    'conflict',
    `Policy '${policy.name}' is built in: it cannot be edited or deleted (${action} refused); create a new policy instead`,
    { policyId: policy.id, policyName: policy.name, builtIn: true, action },
  );
}
