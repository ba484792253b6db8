import { randomUUID } from 'node:crypto';
import { isoNow } from '../../clock/index.ts';
import {
  DEFAULT_BOOT_CHECK,
  type DrillChecks,
  type DrillPointChoice,
  type DrillRun,
} from '../../domain/drill.ts';
import type { Machine } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { VaultContext } from '../vault-context.ts';

/** What a drill of one machine does: from its schedule, or as asked for by an operator. */
export interface MachineDrillRequest {
  point: DrillPointChoice;
  testNetwork: string | null;
  checks: DrillChecks;
  timeLimitSeconds: number;
  scheduleId?: string | null;
  createdBy: string;
  /** A run the scheduler recorded as waiting: started as this run instead of a new one. */
  waitingRunId?: string;
}

/**
 * Starts a drill of a protected machine: records the run, then submits its
 * job. Refused (naming the machine, its state and what is allowed) when the
 * machine has no replica to drill or a drill of it already runs.
 */
export async function requestMachineDrill(
  vault: VaultContext,
  machine: Machine,
  request: MachineDrillRequest,
): Promise<DrillRun> {
  if (machine.state !== 'protected' && machine.state !== 'test-failover-active') {
    throw new HavenError(
      'operation_not_allowed',
      `machine '${machine.name}' is ${machine.state}: drills run on protected machines (their replica at the recovery site)`,
      { machineId: machine.id, state: machine.state, allowed: ['protected', 'test-failover-active'] },
    );
  }
  const active = await vault.store.drillRuns.list({
    target: { kind: 'machine', machineId: machine.id },
    states: ['running'],
    limit: 1,
  });
  if (active[0]) {
    throw new HavenError(
      'conflict',
      `machine '${machine.name}' is already in drill ${active[0].id.slice(0, 8)} (since ${active[0].startedAt}); wait for it to end or cancel its job`,
      { machineId: machine.id, drillId: active[0].id, jobId: active[0].jobId },
    );
  }
  const now = isoNow(vault.clock);
  const waiting = request.waitingRunId ? await vault.store.drillRuns.get(request.waitingRunId) : undefined;
  const id = waiting?.id ?? randomUUID();
  const jobId = randomUUID();
  const run: DrillRun = {
    id,
    scheduleId: request.scheduleId ?? null,
    target: { kind: 'machine', machineId: machine.id },
    targetName: machine.name,
    jobId,
    state: 'running',
    reason: null,
    machines: [
      {
        machineId: machine.id,
        machineName: machine.name,
        point: null,
        copy: null,
        rtoSeconds: null,
        checks: [],
        cleanedUp: false,
      },
    ],
    rtoSeconds: null,
    checks: [],
    createdBy: request.createdBy,
    createdAt: waiting?.createdAt ?? now,
    startedAt: now,
    endedAt: null,
  };
  if (waiting) await vault.store.drillRuns.update(run);
  else await vault.store.drillRuns.create(run);
  await vault.engine.submit({
    kind: 'drill',
    id: jobId,
    targetType: 'machine',
    targetId: machine.id,
    createdBy: request.createdBy,
    input: {
      drillId: id,
      machineId: machine.id,
      point: request.point,
      testNetwork: request.testNetwork,
      checks: request.checks,
      boot: request.checks.boot ?? DEFAULT_BOOT_CHECK,
      timeLimitSeconds: request.timeLimitSeconds,
    },
  });
  return run;
}
