import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { DrillRun } from '../../domain/drill.ts';
import type { RecoveryPlan } from '../../domain/model.ts';
import { planRtoEstimate } from './plan-rto.ts';
import { type PlanTestVault, startPlanTestVault } from './plan-test-vault.fixture.ts';

let v: PlanTestVault;
before(async () => {
  v = await startPlanTestVault(['web', 'db']);
});
after(async () => {
  await v?.stop();
});

const drill = (
  machineId: string,
  rtoSeconds: number,
  state: DrillRun['state'],
  endedAt: string,
): DrillRun => ({
  id: `drill-${machineId}-${endedAt}`,
  scheduleId: null,
  target: { kind: 'machine', machineId },
  targetName: machineId,
  jobId: null,
  state,
  reason: null,
  machines: [
    {
      machineId,
      machineName: machineId,
      point: { id: `${machineId}@1`, time: endedAt, type: 'crash-consistent' },
      copy: null,
      rtoSeconds,
      checks: [
        {
          kind: 'boot',
          name: 'boot',
          result: state === 'passed' ? 'passed' : 'failed',
          summary: '',
          evidence: null,
          evidenceIsScriptOutput: false,
          startedAt: endedAt,
          durationMs: 1,
        },
      ],
      cleanedUp: true,
    },
  ],
  rtoSeconds,
  checks: [],
  createdBy: 'test',
  createdAt: endedAt,
  startedAt: endedAt,
  endedAt,
});

test("a plan's RTO estimate takes each machine's time to come up from its last passing drill", async () => {
  const { web, db } = v.machines as Record<string, { id: string }>;
  const created = await v.call<RecoveryPlan>('POST', '/plans', {
    name: 'shop',
    groups: [
      { name: 'data', machines: ['db'] },
      { name: 'front', machines: ['web'] },
    ],
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const plan = (await v.vault.context.store.plans.get(created.body.id))!;
  assert.equal((await planRtoEstimate(v.vault.context, plan)).seconds, null);
  await v.vault.context.store.drillRuns.create(drill(db!.id, 20, 'passed', '2026-12-05T10:00:00.000Z'));
  await v.vault.context.store.drillRuns.create(drill(web!.id, 7.5, 'passed', '2026-12-05T10:00:00.000Z'));
  // A failed drill measures nothing.
  await v.vault.context.store.drillRuns.create(drill(web!.id, 99, 'failed', '2026-12-05T11:00:00.000Z'));
  const estimate = await planRtoEstimate(v.vault.context, plan);
  assert.deepEqual(estimate.groups, [
    { name: 'data', seconds: 20 },
    { name: 'front', seconds: 7.5 },
  ]);
  assert.equal(estimate.seconds, 27.5);
  assert.deepEqual(estimate.machinesWithoutHistory, []);
});
