import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openStore } from '../open-store.ts';
import { sqliteMigratedBefore } from './sqlite-migrated-before.ts';

const legacyGroups = [
  {
    name: 'web',
    machineIds: ['vm-1'],
    before: [{ kind: 'script', name: 'dns', text: '/srv/dr/switch-dns.sh', timeoutSeconds: 60 }],
    after: [{ kind: 'manual', name: 'check', text: 'Check the shop', timeoutSeconds: null }],
  },
];

/** A script action's outcome as plan jobs kept it before 0005 (its output aside). */
const legacyOutcome = {
  name: 'dns',
  group: 'web',
  exitCode: 0,
  signal: null,
  timedOut: false,
  durationMs: 20,
};

describe('migration 0005-script-runs', () => {
  it('turns inline commands of plans and plan jobs into actions that never run, and moves old outputs out of jobs', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'haven-migration-'));
    try {
      const db = await sqliteMigratedBefore(dataDir, '0005');
      const now = new Date().toISOString();
      await db
        .insertInto('recovery_plans')
        .values({
          id: 'p1',
          name: 'shop',
          description: '',
          groups: JSON.stringify(legacyGroups),
          created_at: now,
          updated_at: now,
        })
        .execute();
      await db
        .insertInto('jobs')
        .values({
          id: 'j1',
          kind: 'recovery-plan',
          target_type: 'plan',
          target_id: 'p1',
          state: 'waiting',
          progress: 0,
          input: JSON.stringify({ planId: 'p1', planName: 'shop', groups: legacyGroups, machineNames: {} }),
          output: JSON.stringify({
            actions: {
              'g1.before.1': { ...legacyOutcome, output: 'root secret\n' },
            },
          }),
          created_by: 'alice',
          created_at: now,
          started_at: now,
          finished_at: null,
          error: null,
          cancel_requested: 0,
          worker_id: null,
          lease_until: null,
        })
        .execute();
      await db
        .insertInto('job_steps')
        .values({
          job_id: 'j1',
          idx: 0,
          name: 'g1.before.1',
          title: 'dns',
          state: 'succeeded',
          progress: 1,
          message: null,
          started_at: now,
          finished_at: now,
          error: null,
        })
        .execute();
      await db.destroy();

      const store = await openStore({ dataDir });
      try {
        const plan = await store.plans.get('p1');
        assert.deepEqual(plan!.groups[0]!.before, [
          { kind: 'inline-script', name: 'dns', text: '/srv/dr/switch-dns.sh', timeoutSeconds: 60 },
        ]);
        assert.deepEqual(plan!.groups[0]!.after, legacyGroups[0]!.after, 'manual actions stay as they were');
        const job = await store.jobs.get('j1');
        const input = job!.input as { groups: typeof legacyGroups };
        assert.equal(input.groups[0]!.before[0]!.kind, 'inline-script');
        // The old output leaves the job (viewers see jobs) for a run record (operators and admins).
        assert.deepEqual((job!.output.actions as Record<string, unknown>)['g1.before.1'], {
          ...legacyOutcome,
          runId: 'j1:g1.before.1',
        });
        const [run] = await store.scriptRuns.list({ jobId: 'j1' });
        assert.equal(run!.id, 'j1:g1.before.1');
        assert.deepEqual(
          [run!.state, run!.output, run!.startedBy, run!.action, run!.planName, run!.startedAt],
          ['succeeded', 'root secret\n', 'alice', 'dns', 'shop', now],
        );
      } finally {
        await store.close();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
