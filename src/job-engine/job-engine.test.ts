import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { Kysely } from 'kysely';
import { type Job, outputOutsideSteps } from '../domain/model.ts';
import { HavenError } from '../errors/index.ts';
import type { Store } from '../store/index.ts';
import type { Database } from '../store/schema.ts';
import { testStores } from '../testing/test-stores.ts';
import { defineJob, type JobDefinition, type JobOutcome } from './job-definition.ts';
import { JobEngine } from './job-engine.ts';

const stores = testStores();
after(() => stores.cleanup());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 10_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A job kind whose steps record what ran, with hooks to block or fail a step. */
function recordingJob(options: {
  ran: string[];
  settled?: JobOutcome[];
  fail?: string;
  block?: { step: string; until: Promise<void> };
  ponr?: string;
  notRetrySafe?: string;
}): JobDefinition {
  return defineJob({
    kind: 'recording',
    steps: () =>
      ['prepare', 'switch', 'finish'].map((name) => ({
        name,
        title: `Step ${name}`,
        retrySafe: options.notRetrySafe !== name,
        pointOfNoReturn: options.ponr === name,
        run: async (ctx) => {
          options.ran.push(ctx.isResumed ? `${name} (resumed)` : name);
          ctx.progress(50, `${name} half way`);
          if (options.block?.step === name) {
            await Promise.race([
              options.block.until,
              new Promise((_, reject) =>
                ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)),
              ),
            ]);
          }
          if (options.fail === name) throw new HavenError('unreachable', `host gone during ${name}`);
          await ctx.output({ [name]: true });
        },
      })),
    settle: async ({ outcome }) => {
      options.settled?.push(outcome);
    },
  });
}

function engine(store: Store, definition: JobDefinition, workerId = 'vault-test'): JobEngine {
  return new JobEngine({
    store,
    definitions: [definition],
    workerId,
    leaseMs: 300,
    pollMs: 20,
    progressIntervalMs: 0,
  });
}

function submit(e: JobEngine): Promise<Job> {
  return e.submit({ kind: 'recording', targetType: 'machine', targetId: 'vm-1', createdBy: 'alice' });
}

for (const dialect of stores.dialects) {
  describe(`job engine on ${dialect}`, () => {
    it('runs steps in order, persisting state, progress, output, timestamps and the operator', async () => {
      const store = await stores.open(dialect);
      const ran: string[] = [];
      const settled: JobOutcome[] = [];
      const e = engine(store, recordingJob({ ran, settled }));
      const job = await submit(e);
      assert.equal(job.state, 'queued');
      assert.deepEqual(
        job.steps.map((s) => [s.name, s.state]),
        [
          ['prepare', 'pending'],
          ['switch', 'pending'],
          ['finish', 'pending'],
        ],
      );
      assert.equal(await e.runOnce(), true);
      const done = (await store.jobs.get(job.id))!;
      assert.deepEqual(ran, ['prepare', 'switch', 'finish']);
      assert.deepEqual(settled, ['succeeded']);
      assert.equal(done.state, 'succeeded');
      assert.equal(done.progress, 100);
      assert.equal(done.createdBy, 'alice');
      assert.deepEqual(done.output, { prepare: true, switch: true, finish: true });
      assert.ok(done.startedAt && done.finishedAt && done.startedAt <= done.finishedAt);
      for (const step of done.steps) {
        assert.equal(step.state, 'succeeded');
        assert.equal(step.progress, 100);
        assert.equal(step.message, `${step.name} half way`);
        assert.ok(step.startedAt && step.finishedAt);
      }
      assert.equal(await e.runOnce(), false, 'nothing left to claim');
      await store.close();
    });

    it('keeps what each step recorded with that step, and merged in the job for the steps after it', async () => {
      const store = await stores.open(dialect);
      const seen: unknown[] = [];
      const e = engine(
        store,
        defineJob({
          kind: 'recording',
          steps: () => [
            {
              name: 'choose',
              title: 'Choose',
              retrySafe: true,
              run: async (ctx) => {
                await ctx.output({ point: 'p1' });
                await ctx.output({ note: 'first' });
              },
            },
            { name: 'quiet', title: 'Record nothing', retrySafe: true, run: async () => {} },
            {
              name: 'start',
              title: 'Start',
              retrySafe: true,
              run: async (ctx) => {
                seen.push((await store.jobs.get(ctx.job.id))?.output.point);
                await ctx.output({ note: 'second', up: true });
              },
            },
          ],
        }),
      );
      const job = await submit(e);
      assert.deepEqual(
        job.steps.map((s) => s.output),
        [{}, {}, {}],
      );
      await e.runOnce();
      const done = (await store.jobs.get(job.id))!;
      assert.deepEqual(seen, ['p1'], 'a later step reads what an earlier one recorded');
      assert.deepEqual(
        done.steps.map((s) => s.output),
        [{ point: 'p1', note: 'first' }, {}, { note: 'second', up: true }],
      );
      assert.deepEqual(done.output, { point: 'p1', note: 'second', up: true });
      // Stored once, with the steps: the job's own column keeps only what was recorded outside them.
      const row = await (store as unknown as { db: Kysely<Database> }).db
        .selectFrom('jobs')
        .select('output')
        .where('id', '=', job.id)
        .executeTakeFirstOrThrow();
      assert.deepEqual(JSON.parse(row.output), {});
      await store.jobs.update(job.id, { output: { ...outputOutsideSteps(done), notes: 'checked' } });
      const noted = (await store.jobs.get(job.id))!;
      assert.deepEqual(noted.output, { point: 'p1', note: 'second', up: true, notes: 'checked' });
      assert.deepEqual(outputOutsideSteps(noted), { notes: 'checked' });
      await store.close();
    });

    it('a failing step fails the job with its error, skips the rest, and settles as failed', async () => {
      const store = await stores.open(dialect);
      const ran: string[] = [];
      const settled: JobOutcome[] = [];
      const e = engine(store, recordingJob({ ran, settled, fail: 'switch' }));
      const job = await submit(e);
      await e.runOnce();
      const done = (await store.jobs.get(job.id))!;
      assert.equal(done.state, 'failed');
      assert.deepEqual(done.error, { code: 'unreachable', message: 'host gone during switch' });
      assert.deepEqual(
        done.steps.map((s) => s.state),
        ['succeeded', 'failed', 'skipped'],
      );
      assert.deepEqual(done.steps[1]!.error, { code: 'unreachable', message: 'host gone during switch' });
      assert.deepEqual(settled, ['failed']);
      assert.deepEqual(ran, ['prepare', 'switch']);
      await store.close();
    });

    it('cancel before the point of no return aborts the running step and settles as cancelled', async () => {
      const store = await stores.open(dialect);
      const ran: string[] = [];
      const settled: JobOutcome[] = [];
      const e = engine(
        store,
        recordingJob({
          ran,
          settled,
          ponr: 'finish',
          block: { step: 'switch', until: new Promise(() => {}) },
        }),
      );
      const job = await submit(e);
      const running = e.runOnce();
      await waitFor(
        'switch to run',
        async () => (await store.jobs.get(job.id))?.steps[1]?.state === 'running',
      );
      assert.equal(e.cancellable((await store.jobs.get(job.id))!).cancellable, true);
      const answer = await e.cancel(job.id);
      assert.equal(answer.cancelRequested, true);
      await running;
      const done = (await store.jobs.get(job.id))!;
      assert.equal(done.state, 'cancelled');
      assert.deepEqual(
        done.steps.map((s) => s.state),
        ['succeeded', 'cancelled', 'skipped'],
      );
      assert.deepEqual(settled, ['cancelled']);
      await assert.rejects(e.cancel(job.id), (err: HavenError) => err.code === 'conflict');
      await store.close();
    });

    it('a queued job can be cancelled and never runs', async () => {
      const store = await stores.open(dialect);
      const ran: string[] = [];
      const settled: JobOutcome[] = [];
      const e = engine(store, recordingJob({ ran, settled }));
      const job = await submit(e);
      await e.cancel(job.id);
      await e.runOnce();
      const done = (await store.jobs.get(job.id))!;
      assert.equal(done.state, 'cancelled');
      assert.deepEqual(ran, []);
      assert.deepEqual(settled, ['cancelled']);
      await store.close();
    });

    it('refuses cancel once the point-of-no-return step has started, and says why', async () => {
      const store = await stores.open(dialect);
      const ran: string[] = [];
      let release!: () => void;
      const e = engine(
        store,
        recordingJob({
          ran,
          ponr: 'switch',
          block: { step: 'switch', until: new Promise<void>((r) => (release = r)) },
        }),
      );
      const job = await submit(e);
      const running = e.runOnce();
      await waitFor(
        'switch to run',
        async () => (await store.jobs.get(job.id))?.steps[1]?.state === 'running',
      );
      await assert.rejects(e.cancel(job.id), (err: HavenError) => {
        assert.equal(err.code, 'cancel_refused');
        assert.equal(err.status, 409);
        assert.match(err.message, /point of no return/);
        assert.equal(err.details.step, 'switch');
        return true;
      });
      assert.deepEqual(e.cancellable((await store.jobs.get(job.id))!), {
        cancellable: false,
        reason: "step 'Step switch' is past the point of no return",
      });
      release();
      await running;
      assert.equal((await store.jobs.get(job.id))!.state, 'succeeded');
      await store.close();
    });

    it('after a crash, resumes at the first unfinished step when that step is safe to repeat', async () => {
      const store = await stores.open(dialect);
      const ran: string[] = [];
      const e = engine(store, recordingJob({ ran }));
      const job = await submit(e);
      // A vault that died mid-way: it claimed the job, finished 'prepare', started 'switch'; its lease ran out.
      const past = new Date(Date.now() - 60_000).toISOString();
      assert.ok(await store.jobs.claim('dead-vault', past, new Date(Date.now() - 1000).toISOString()));
      await store.jobs.updateStep(job.id, 0, { state: 'succeeded', progress: 100, finishedAt: past });
      await store.jobs.updateStep(job.id, 1, { state: 'running', startedAt: past });
      await e.runOnce();
      const done = (await store.jobs.get(job.id))!;
      assert.deepEqual(ran, ['switch (resumed)', 'finish']);
      assert.equal(done.state, 'succeeded');
      assert.equal(done.steps[1]!.startedAt, past, 'the step keeps its original start time');
      await store.close();
    });

    it('after a crash, fails with a clear reason when the interrupted step is not safe to repeat', async () => {
      const store = await stores.open(dialect);
      const ran: string[] = [];
      const settled: JobOutcome[] = [];
      const e = engine(store, recordingJob({ ran, settled, notRetrySafe: 'switch' }));
      const job = await submit(e);
      const past = new Date(Date.now() - 60_000).toISOString();
      await store.jobs.claim('dead-vault', past, new Date(Date.now() - 1000).toISOString());
      await store.jobs.updateStep(job.id, 0, { state: 'succeeded', progress: 100 });
      await store.jobs.updateStep(job.id, 1, { state: 'running', startedAt: past });
      await e.runOnce();
      const done = (await store.jobs.get(job.id))!;
      assert.deepEqual(ran, []);
      assert.equal(done.state, 'failed');
      assert.equal(done.error?.code, 'interrupted');
      assert.match(done.error!.message, /stopped while step 'Step switch' was running.*not safe to repeat/);
      assert.deepEqual(
        done.steps.map((s) => s.state),
        ['succeeded', 'failed', 'skipped'],
      );
      assert.deepEqual(settled, ['failed']);
      await store.close();
    });

    it('a running job whose lease is still valid is not taken by another vault', async () => {
      const store = await stores.open(dialect);
      const e = engine(store, recordingJob({ ran: [] }));
      await submit(e);
      const now = new Date().toISOString();
      assert.ok(await store.jobs.claim('vault-a', now, new Date(Date.now() + 60_000).toISOString()));
      assert.equal(await e.runOnce(), false);
      await store.close();
    });
  });
}

describe('job engine: several vaults on one PostgreSQL database', () => {
  it('share the queue: every job runs exactly once', async () => {
    const location = await stores.location('postgres');
    const { openStore } = await import('../store/index.ts');
    const a = await openStore(location);
    const b = await openStore(location);
    const runs = new Map<string, string[]>();
    const counting = (worker: string) =>
      defineJob({
        kind: 'count',
        steps: () => [
          {
            name: 'only',
            title: 'Count',
            retrySafe: true,
            run: async (ctx) => {
              runs.set(ctx.job.id, [...(runs.get(ctx.job.id) ?? []), worker]);
              await sleep(5);
            },
          },
        ],
      });
    const ea = new JobEngine({
      store: a,
      definitions: [counting('a')],
      workerId: 'a',
      pollMs: 10,
      concurrency: 3,
    });
    const eb = new JobEngine({
      store: b,
      definitions: [counting('b')],
      workerId: 'b',
      pollMs: 10,
      concurrency: 3,
    });
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) {
      ids.push(
        (await ea.submit({ kind: 'count', targetType: 'vault', targetId: null, createdBy: 'test' })).id,
      );
    }
    await ea.start();
    await eb.start();
    await waitFor('all jobs to finish', async () => {
      const jobs = await a.jobs.list({ limit: 100 });
      return jobs.filter((j) => j.state === 'succeeded').length === 30;
    });
    await ea.stop();
    await eb.stop();
    for (const id of ids) assert.equal(runs.get(id)?.length, 1, `job ${id} ran ${runs.get(id)?.join(',')}`);
    await a.close();
    await b.close();
  });
});
