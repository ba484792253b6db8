import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Kysely } from 'kysely';
import { outputOutsideSteps } from '../../domain/model.ts';
import { openStore } from '../open-store.ts';
import { sqliteMigratedBefore } from './sqlite-migrated-before.ts';

describe('migration 0011-job-step-output', () => {
  it('reads a job from before it: its merged output as it was, its steps with no output of their own', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'haven-migration-'));
    try {
      const db = await sqliteMigratedBefore(dataDir, '0011');
      const now = new Date().toISOString();
      const output = {
        recoveryPoint: { id: 'vm-1@3', time: now, type: 'crash-consistent' },
        shutdown: 'graceful',
      };
      await db
        .insertInto('jobs')
        .values({
          id: 'j1',
          kind: 'failover',
          target_type: 'machine',
          target_id: 'vm-1',
          state: 'succeeded',
          progress: 100,
          input: '{}',
          output: JSON.stringify(output),
          created_by: 'alice',
          created_at: now,
          started_at: now,
          finished_at: now,
          error: null,
          cancel_requested: 0,
          worker_id: null,
          lease_until: null,
        })
        .execute();
      // Written as the table was before 0011 (no output column yet).
      const oldStep = (idx: number, name: string) => ({
        job_id: 'j1',
        idx,
        name,
        title: name,
        state: 'succeeded',
        progress: 100,
        message: null,
        started_at: now,
        finished_at: now,
        error: null,
      });
      await (db as unknown as Kysely<{ job_steps: ReturnType<typeof oldStep> }>)
        .insertInto('job_steps')
        .values([oldStep(0, 'choose-point'), oldStep(1, 'shutdown-source')])
        .execute();
      await db.destroy();

      const store = await openStore({ dataDir });
      try {
        const job = (await store.jobs.get('j1'))!;
        assert.deepEqual(job.output, output);
        assert.deepEqual(
          job.steps.map((s) => s.output),
          [null, null],
        );
        assert.deepEqual(outputOutsideSteps(job), output, "shown as the whole job's results, as before");
        const [listed] = await store.jobs.list();
        assert.deepEqual(
          listed!.steps.map((s) => s.output),
          [null, null],
        );
      } finally {
        await store.close();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
