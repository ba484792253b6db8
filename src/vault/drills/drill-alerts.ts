import { randomUUID } from 'node:crypto';
import { isoNow } from '../../clock/index.ts';
import type { DrillRun, DrillTarget } from '../../domain/drill.ts';
import type { VaultContext } from '../vault-context.ts';

/** One open alert per drilled target whose last drill failed; the next pass clears it. */
export function drillFailedAlertKey(target: DrillTarget): string {
  return target.kind === 'machine'
    ? `drill-failed:machine:${target.machineId}`
    : `drill-failed:plan:${target.planId}`;
}

/** One open alert per scheduled target that has gone without a passing drill for too long. */
export function drillOverdueAlertKey(target: DrillTarget): string {
  return target.kind === 'machine'
    ? `drill-overdue:machine:${target.machineId}`
    : `drill-overdue:plan:${target.planId}`;
}
const OVERDUE_PREFIX = 'drill-overdue:';

const DAY_MS = 86_400_000;
/** "8 days", "5 h", "40 min": an age as an operator reads it. */
function ageInWords(ms: number): string {
  if (ms >= 2 * DAY_MS) return `${Math.floor(ms / DAY_MS)} days`;
  if (ms >= 3_600_000) return `${Math.floor(ms / 3_600_000)} h`;
  return `${Math.max(1, Math.floor(ms / 60_000))} min`;
}

export function drillAlerts(vault: VaultContext) {
  return {
    /**
     * Raises the overdue alert of each scheduled target whose last pass (or,
     * never passed, whose first schedule) is older than `maxAgeMs`, and clears
     * it for every other target, also those no longer scheduled.
     */
    async checkOverdue(
      scheduled: ReadonlyArray<{
        target: DrillTarget;
        targetName: string;
        since: string;
        lastPassedAt: string | null;
      }>,
      maxAgeMs: number,
    ): Promise<void> {
      const now = vault.clock.now().getTime();
      const at = isoNow(vault.clock);
      const overdue = new Set<string>();
      for (const t of scheduled) {
        const from = t.lastPassedAt ?? t.since;
        const age = now - Date.parse(from);
        if (age <= maxAgeMs) continue;
        const key = drillOverdueAlertKey(t.target);
        overdue.add(key);
        const what =
          t.target.kind === 'machine' ? `Machine '${t.targetName}'` : `Recovery plan '${t.targetName}'`;
        await vault.store.alerts.raise({
          id: randomUUID(),
          key,
          severity: 'warning',
          message:
            t.lastPassedAt === null
              ? `${what}: no drill has passed in the ${ageInWords(age)} since it was first scheduled (${from}); allowed: ${ageInWords(maxAgeMs)}`
              : `${what}: no drill has passed for ${ageInWords(age)} (last pass ${from}); allowed: ${ageInWords(maxAgeMs)}`,
          subjectType: t.target.kind === 'machine' ? 'machine' : 'vault',
          subjectId: t.target.kind === 'machine' ? t.target.machineId : null,
          raisedAt: at,
          clearedAt: null,
        });
      }
      for (const alert of await vault.store.alerts.list({ open: true, limit: 10_000 })) {
        if (alert.key.startsWith(OVERDUE_PREFIX) && !overdue.has(alert.key))
          await vault.store.alerts.clear(alert.key, at);
      }
    },

    async onDrillEnded(run: DrillRun): Promise<void> {
      const at = run.endedAt ?? isoNow(vault.clock);
      const key = drillFailedAlertKey(run.target);
      if (run.state === 'passed') {
        await vault.store.alerts.clear(key, at);
        await vault.store.alerts.clear(drillOverdueAlertKey(run.target), at);
        return;
      }
      if (run.state !== 'failed' && run.state !== 'interrupted') return;
      const what =
        run.target.kind === 'machine' ? `Machine '${run.targetName}'` : `Recovery plan '${run.targetName}'`;
      await vault.store.alerts.raise({
        id: randomUUID(),
        key,
        severity: 'warning',
        message: `${what}: drill ${run.id.slice(0, 8)} ${run.state}: ${run.reason ?? 'no reason recorded'}`,
        subjectType: run.target.kind === 'machine' ? 'machine' : 'vault',
        subjectId: run.target.kind === 'machine' ? run.target.machineId : null,
        raisedAt: at,
        clearedAt: null,
      });
    },
  };
}
