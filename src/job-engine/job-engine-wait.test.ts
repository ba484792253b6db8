import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { Job } from '../domain/model.ts';
import { HavenError } from '../errors/index.ts';
import type { Store } from '../store/index.ts';
import { testStores } from '../testing/test-stores.ts';
import { defineJob, type JobDefinition, type JobOutcome } from './job-definition.ts';
import { JobEngine } from './job-engine.ts';

const stores = testStores();
after(() => stores.cleanup());

/** before -> ask (waits for the operator) -> after */
function manualJob(ran: string[], settled: JobOutcome[]): JobDefinition {
  return defineJob({
    kind: 'manual',
    steps: () =>
      ['before', 'ask', 'after'].map((name) => ({
        name,
        title: name,
        retrySafe: true,
        run: async (ctx) => {
          ran.push(name);
          if (name === 'ask') await ctx.waitForOperator('Switch the DNS record, then resume');
        },
      })),
    settle: async ({ outcome }) => {
      settled.push(outcome);
    },
  });
}

function engine(store: Store, definition: JobDefinition): JobEngine {
  return new JobEngine({ store, definitions: [definition], leaseMs: 300, pollMs: 20, progressIntervalMs: 0 });
}

async function waitingJob(store: Store, ran: string[], settled: JobOutcome[]): Promise<Job> {
  const e = engine(store, manualJob(ran, settled));
  const job = await e.submit({ kind: 'manual', targetType: 'plan', targetId: 'p', createdBy: 'alice' });
  assert.equal(await e.runOnce(), true);
  return (await store.jobs.get(job.id))!;
}

describe('job engine: waiting for an operator', () => {
  it('pauses in waiting with the instructions, is not claimed (even after a restart), and resume goes on', async () => {
    const store = await stores.open('sqlite');
    const ran: string[] = [];
    const settled: JobOutcome[] = [];
    const job = await waitingJob(store, ran, settled);
    assert.equal(job.state, 'waiting');
    assert.deepEqual(ran, ['before', 'ask']);
    assert.deepEqual(
      job.steps.map((s) => s.state),
      ['succeeded', 'running', 'pending'],
    );
    assert.equal(job.steps[1]!.message, 'Switch the DNS record, then resume');
    assert.deepEqual(settled, []);

    // A new vault process on the same store: the job keeps waiting.
    const restarted = engine(store, manualJob(ran, settled));
    await restarted.start({ exclusive: true });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await restarted.runOnce(), false);
    assert.equal((await store.jobs.get(job.id))!.state, 'waiting');

    await assert.rejects(
      restarted.resume('nope', 'bob'),
      (e: unknown) => e instanceof HavenError && e.status === 404,
    );
    await restarted.resume(job.id, 'bob');
    await restarted.idle();
    for (let i = 0; i < 100 && (await store.jobs.get(job.id))!.state !== 'succeeded'; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await restarted.stop();
    const done = (await store.jobs.get(job.id))!;
    assert.equal(done.state, 'succeeded');
    assert.deepEqual(ran, ['before', 'ask', 'after']);
    assert.match(done.steps[1]!.message!, /Switch the DNS record, then resume \(resumed by bob at /);
    assert.ok(done.steps[1]!.finishedAt! <= done.steps[2]!.startedAt!);
    assert.deepEqual(settled, ['succeeded']);
    await assert.rejects(
      restarted.resume(job.id, 'bob'),
      (e: unknown) =>
        e instanceof HavenError && e.status === 409 && /is succeeded: only a job waiting/.test(e.message),
    );
    await store.close();
  });

  it('cancel ends a waiting job at once and runs its settle', async () => {
    const store = await stores.open('sqlite');
    const ran: string[] = [];
    const settled: JobOutcome[] = [];
    const job = await waitingJob(store, ran, settled);
    const e = engine(store, manualJob(ran, settled));
    const cancelled = await e.cancel(job.id);
    assert.equal(cancelled.state, 'cancelled');
    assert.deepEqual(
      cancelled.steps.map((s) => s.state),
      ['succeeded', 'cancelled', 'skipped'],
    );
    assert.deepEqual(settled, ['cancelled']);
    assert.deepEqual(ran, ['before', 'ask']);
    await store.close();
  });
});
