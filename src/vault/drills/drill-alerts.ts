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

export function drillAlerts(vault: VaultContext) {
  return {
    async onDrillEnded(run: DrillRun): Promise<void> {
      const at = run.endedAt ?? isoNow(vault.clock);
      const key = drillFailedAlertKey(run.target);
      if (run.state === 'passed') {
        await vault.store.alerts.clear(key, at);
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
