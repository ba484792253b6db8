/**
 * A job in words, for the CLI and the portal alike: "Test failover",
 * "Failover of plan billing", "Vault backup" — never its kind as the API
 * spells it.
 */
import type { LifecycleOperation } from '../domain/lifecycle.ts';

export const OPERATION_TITLES: Record<LifecycleOperation, string> = {
  'enable-replication': 'Enable replication',
  'disable-replication': 'Disable replication',
  'test-failover': 'Test failover',
  'cleanup-test-failover': 'Clean up test failover',
  failover: 'Failover',
  'planned-failover': 'Planned failover',
  failback: 'Failback',
  'complete-failover': 'Complete failover',
  'change-recovery-point': 'Change recovery point',
  commit: 'Commit',
  reprotect: 'Reprotect',
  resync: 'Resynchronise',
};

const OTHER_KINDS: Record<string, string> = {
  'vault-backup': 'Vault backup',
  drill: 'Drill',
  'plan-drill': 'Plan drill',
};

/** "enable-replication" → "Enable replication": for a kind this module does not know yet. */
function fromKind(kind: string): string {
  const words = kind.replace(/[-_]+/g, ' ').trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function jobTitle(job: { kind: string; input?: Record<string, unknown> }): string {
  if (Object.hasOwn(OPERATION_TITLES, job.kind)) return OPERATION_TITLES[job.kind as LifecycleOperation];
  if (job.kind === 'recovery-plan') {
    const operation = job.input?.operation;
    const title =
      typeof operation === 'string' && Object.hasOwn(OPERATION_TITLES, operation)
        ? OPERATION_TITLES[operation as LifecycleOperation]
        : 'Run';
    const plan = job.input?.planName;
    return typeof plan === 'string' ? `${title} of plan ${plan}` : `${title} of a plan`;
  }
  return OTHER_KINDS[job.kind] ?? fromKind(job.kind);
}
