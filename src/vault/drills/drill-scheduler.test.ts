import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import { ManualClock } from '../../clock/index.ts';
import type { DrillRun, DrillSchedule, DrillTarget } from '../../domain/drill.ts';
import type { Job, MachineState } from '../../domain/model.ts';
import { notFound } from '../../errors/index.ts';
import { until } from '../../testing/until.ts';
import type { VaultJobDefinition } from '../jobs/job-inputs.ts';
import { type PlanTestVault, startPlanTestVault } from '../plans/plan-test-vault.fixture.ts';
import type { VaultContext } from '../vault-context.ts';
import { drillOverdueAlertKey } from './drill-alerts.ts';
import { drillJob } from './drill-job.ts';
import { DrillScheduler } from './drill-scheduler.ts';
import { planDrillJob } from './plan-drill-job.ts';
import { requestMachineDrill } from './request-drill.ts';

/**
 * The scheduler's rules with the real vault in process. The drill job is the
 * real one (its settle: states, alerts, clean-up of what it recorded) with one
 * stand-in step instead of booting a guest: it holds until the test lets it
 * go (or its job is cancelled), then records a boot check that passes, or
 * fails for machines named fail-*.
 */
const gates = new Map<string, PromiseWithResolvers<void>>();
const gate = (drillId: string) => {
  let g = gates.get(drillId);
  if (!g) {
    g = Promise.withResolvers<void>();
    gates.set(drillId, g);
  }
  return g;
};
const release = (drillId: string) => gate(drillId).resolve();
/** Lets every running drill go, until none runs. */
async function releaseAll(ctx: VaultContext): Promise<void> {
  await until('the drills to end', async () => {
    const running = await ctx.store.drillRuns.list({ states: ['running'] });
    for (const r of running) release(r.id);
    return running.length === 0;
  });
}

function standInDrillJob<K extends 'drill' | 'plan-drill'>(
  real: VaultJobDefinition<K>,
  vault: () => VaultContext,
): VaultJobDefinition<K> {
  return {
    ...real,
    steps: () => [
      {
        name: 'boot',
        title: 'Boot (stand-in)',
        retrySafe: true,
        run: async (ctx) => {
          const aborted = new Promise((_, reject) =>
            ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true }),
          );
          await Promise.race([gate(ctx.input.drillId).promise, aborted]);
          const store = vault().store;
          const run = (await store.drillRuns.get(ctx.input.drillId))!;
          const fails = run.targetName.startsWith('fail-');
          const at = new Date().toISOString();
          await store.drillRuns.update({
            ...run,
            machines: run.machines.map((m) => ({
              ...m,
              checks: [
                {
                  kind: 'boot',
                  name: 'boot',
                  result: fails ? 'failed' : 'passed',
                  summary: fails ? 'no console output within 1 s' : 'up',
                  evidence: fails ? '' : 'haven-guest booted',
                  evidenceIsScriptOutput: false,
                  startedAt: at,
                  durationMs: 1,
                },
              ],
            })),
          });
        },
      },
    ],
  };
}

const CHECKS = { filesystems: false, script: null };

describe('drill scheduler', () => {
  let t: PlanTestVault;
  let ctx: VaultContext;
  let scheduler: DrillScheduler;

  before(async () => {
    t = await startPlanTestVault(['web', 'db', 'app', 'fail-mail'], 50, {
      jobs: (vault) => [standInDrillJob(drillJob(vault), vault), standInDrillJob(planDrillJob(vault), vault)],
      // The vault's own scheduler stays out of the way: the tests tick their own.
      drillTickMs: 3_600_000,
    });
    ctx = t.vault.context;
    scheduler = new DrillScheduler(ctx, { timeLimitGraceMs: 0 });
  });
  after(async () => {
    await releaseAll(ctx);
    await t.stop();
  });
  afterEach(async () => {
    // Every test leaves no drill running and no schedule behind.
    await releaseAll(ctx);
    for (const s of await ctx.store.drillSchedules.list()) await ctx.store.drillSchedules.delete(s.id);
    for (const r of await ctx.store.drillRuns.list({ states: ['waiting'] }))
      await ctx.store.drillRuns.update({ ...r, state: 'skipped', endedAt: new Date().toISOString() });
    for (const m of Object.values(t.machines)) await setState(m.id, 'protected');
  });

  const setState = async (machineId: string, state: MachineState) => {
    const m = (await ctx.store.machines.get(machineId))!;
    if (m.state !== state)
      assert.ok(await ctx.store.machines.transition(m.id, m.state, state, null, m.createdAt));
  };

  const schedule = async (
    name: string,
    target: DrillTarget,
    more: Partial<DrillSchedule> = {},
  ): Promise<DrillSchedule> => {
    const now = Date.now();
    const s: DrillSchedule = {
      id: randomUUID(),
      name,
      target,
      cadence: { kind: 'every', hours: 6 },
      point: 'latest-crash-consistent',
      testNetwork: null,
      maxConcurrentPerHost: 4,
      timeLimitSeconds: 600,
      checks: CHECKS,
      onConflict: 'skip',
      enabled: true,
      nextRunAt: new Date(now - 1000).toISOString(),
      lastRunAt: null,
      createdBy: 'admin',
      createdAt: new Date(now - 2000).toISOString(),
      updatedAt: new Date(now - 2000).toISOString(),
      ...more,
    };
    await ctx.store.drillSchedules.create(s);
    return s;
  };
  const machine = (name: string): DrillTarget => ({ kind: 'machine', machineId: t.machines[name]!.id });
  const runsOf = (s: DrillSchedule) => ctx.store.drillRuns.list({ scheduleId: s.id });
  const onlyRun = async (s: DrillSchedule): Promise<DrillRun> => {
    const runs = await runsOf(s);
    assert.equal(runs.length, 1, `one run of ${s.name}: ${JSON.stringify(runs.map((r) => r.state))}`);
    return runs[0]!;
  };
  const ended = (id: string) =>
    until(`drill ${id} to end`, async () => {
      const r = await ctx.store.drillRuns.get(id);
      return r && r.endedAt !== null && r.state !== 'waiting' ? r : undefined;
    });

  it('starts a due drill once, also when two schedulers see it due at the same time, and moves the schedule on', async () => {
    const s = await schedule('web nightly', machine('web'));
    const other = new DrillScheduler(ctx);
    await Promise.all([scheduler.runOnce(), other.runOnce(), scheduler.runOnce()]);
    const run = await onlyRun(s);
    assert.equal(run.state, 'running');
    assert.ok(run.jobId);
    const moved = (await ctx.store.drillSchedules.get(s.id))!;
    assert.ok(moved.lastRunAt);
    const hours = (Date.parse(moved.nextRunAt!) - Date.parse(moved.lastRunAt)) / 3_600_000;
    assert.equal(hours, 6);
    release(run.id);
    const done = await ended(run.id);
    assert.equal(done.state, 'passed', done.reason ?? '');
    assert.equal(done.scheduleId, s.id);
    assert.equal(done.createdBy, 'schedule web nightly');
    // Not due again until its next run.
    await scheduler.runOnce();
    assert.equal((await runsOf(s)).length, 1);
  });

  it('runs at most maxConcurrentPerHost drills on one recovery host; the others wait, then start in due order', async () => {
    const base = Date.now() - 10_000;
    const a = await schedule('a', machine('web'), {
      maxConcurrentPerHost: 1,
      nextRunAt: new Date(base).toISOString(),
    });
    const b = await schedule('b', machine('db'), {
      maxConcurrentPerHost: 1,
      nextRunAt: new Date(base + 1).toISOString(),
    });
    const c = await schedule('c', machine('app'), {
      maxConcurrentPerHost: 1,
      nextRunAt: new Date(base + 2).toISOString(),
    });
    await scheduler.runOnce();
    assert.equal((await onlyRun(a)).state, 'running');
    for (const waiting of [b, c]) {
      const run = await onlyRun(waiting);
      assert.equal(run.state, 'waiting');
      assert.match(run.reason!, /recovery host 'kvm-a' runs 1 drill machine\(s\), at most 1 at once/);
      assert.equal(run.jobId, null);
    }
    // Nothing frees: they keep waiting.
    await scheduler.runOnce();
    assert.equal((await onlyRun(b)).state, 'waiting');
    release((await onlyRun(a)).id);
    await ended((await onlyRun(a)).id);
    await scheduler.runOnce();
    assert.equal((await onlyRun(b)).state, 'running', 'the one due first starts first');
    assert.equal((await onlyRun(c)).state, 'waiting');
    const bRun = await onlyRun(b);
    assert.ok(bRun.startedAt! > bRun.createdAt, 'it started later than it was due');
    release(bRun.id);
    await ended(bRun.id);
    await scheduler.runOnce();
    assert.equal((await onlyRun(c)).state, 'running');
  });

  it('never runs more drills in all than the job workers less two, so a failover finds a worker', async () => {
    assert.equal(scheduler.maxDrillsInAll, ctx.engine.concurrency - 2);
    const all = await Promise.all(
      ['web', 'db', 'app'].map((n, i) =>
        schedule(`all ${n}`, machine(n), {
          nextRunAt: new Date(Date.now() - 10_000 + i).toISOString(),
        }),
      ),
    );
    await scheduler.runOnce();
    const states = await Promise.all(all.map(async (s) => (await onlyRun(s)).state));
    assert.deepEqual(states, ['running', 'running', 'waiting']);
    assert.match(
      (await onlyRun(all[2]!)).reason!,
      /the vault runs at most 2 drills at once \(its job workers less 2 kept for failovers\), and 2 run/,
    );
  });

  it('a machine in a test failover: the schedule skips it, or waits and starts when it is protected again', async () => {
    await setState(t.machines.web!.id, 'test-failover-active');
    const skips = await schedule('skips', machine('web'), { onConflict: 'skip' });
    const waits = await schedule('waits', machine('web'), { onConflict: 'wait' });
    await scheduler.runOnce();
    const skipped = await onlyRun(skips);
    assert.equal(skipped.state, 'skipped');
    assert.equal(
      skipped.reason,
      "machine 'web' is in a test failover (test-failover-active); the schedule skips then",
    );
    assert.ok(skipped.endedAt);
    const waiting = await onlyRun(waits);
    assert.equal(waiting.state, 'waiting');
    assert.equal(
      waiting.reason,
      "machine 'web' is in a test failover (test-failover-active); the drill waits for it",
    );
    // The history of the machine shows both.
    assert.equal((await ctx.store.drillRuns.list({ machineId: t.machines.web!.id })).length >= 2, true);
    await setState(t.machines.web!.id, 'protected');
    await scheduler.runOnce();
    const started = await onlyRun(waits);
    assert.equal(started.state, 'running');
    assert.equal(started.id, waiting.id, 'the waiting run is the one that runs');
  });

  it("a drill that waits longer than its schedule's time limit is skipped, saying what it waited for", async () => {
    await setState(t.machines.db!.id, 'failing-over');
    const s = await schedule('db waits', machine('db'), { onConflict: 'wait', timeLimitSeconds: 600 });
    await scheduler.runOnce();
    assert.equal((await onlyRun(s)).state, 'waiting');
    const later = new ManualClock(new Date(Date.now() + 601_000));
    await new DrillScheduler({ ...ctx, clock: later }).runOnce();
    const run = await onlyRun(s);
    assert.equal(run.state, 'skipped');
    assert.equal(
      run.reason,
      "still waiting after the schedule's time limit of 600 s: machine 'db' is in another operation (failing-over); the drill waits for it",
    );
  });

  it('skips a machine that is not protected, a deleted machine, and a deleted plan', async () => {
    await setState(t.machines.app!.id, 'failed-over');
    const notProtected = await schedule('app', machine('app'), { onConflict: 'wait' });
    const gone = await schedule('gone', { kind: 'machine', machineId: randomUUID() });
    const plan = await schedule('a plan', { kind: 'plan', planId: randomUUID() });
    await scheduler.runOnce();
    assert.deepEqual(
      await Promise.all([notProtected, gone, plan].map(async (s) => (await onlyRun(s)).state)),
      ['skipped', 'skipped', 'skipped'],
    );
    assert.equal(
      (await onlyRun(notProtected)).reason,
      "machine 'app' is failed-over: drills run on protected machines",
    );
    assert.match((await onlyRun(gone)).reason!, /does not exist any more/);
    assert.equal(
      (await onlyRun(plan)).reason,
      `plan ${plan.target.kind === 'plan' && plan.target.planId} does not exist any more`,
    );
  });

  it("starts a plan's drill with every machine of the plan; per-host limits count each drill machine", async () => {
    const created = await t.call<{ id: string }>('POST', '/plans', {
      name: 'sched-shop',
      groups: [
        { name: 'data', machines: ['db'] },
        { name: 'front', machines: ['web', 'app'] },
      ],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const planTarget: DrillTarget = { kind: 'plan', planId: created.body.id };
    const base = Date.now() - 10_000;
    const single = await schedule('web alone', machine('web'), { nextRunAt: new Date(base).toISOString() });
    const plan = await schedule('shop', planTarget, {
      maxConcurrentPerHost: 3,
      onConflict: 'wait',
      nextRunAt: new Date(base + 1).toISOString(),
    });
    const tooBig = await schedule('shop on a small host', planTarget, {
      maxConcurrentPerHost: 2,
      nextRunAt: new Date(base + 2).toISOString(),
    });
    await scheduler.runOnce();
    const waiting = await onlyRun(plan);
    assert.equal(waiting.state, 'waiting');
    assert.match(waiting.reason!, /machine 'web' is in drill .*; the drill waits for it/);
    const skipped = await onlyRun(tooBig);
    assert.equal(skipped.state, 'skipped');
    assert.match(
      skipped.reason!,
      /plan 'sched-shop' drills 3 machines on recovery host 'kvm-a', more than the schedule's 2 at once/,
    );
    release((await onlyRun(single)).id);
    await ended((await onlyRun(single)).id);
    await scheduler.runOnce();
    const started = await onlyRun(plan);
    assert.equal(started.state, 'running', started.reason ?? '');
    assert.equal(started.targetName, 'sched-shop');
    assert.deepEqual(started.machines.map((m) => m.machineName).sort(), ['app', 'db', 'web']);
    const job = (await ctx.store.jobs.get(started.jobId!))!;
    assert.equal(job.kind, 'plan-drill');
    // Its three machines fill the host for a machine schedule allowing three.
    const meanwhile = await schedule('db too', machine('db'), {
      maxConcurrentPerHost: 3,
      onConflict: 'wait',
    });
    await scheduler.runOnce();
    assert.match((await onlyRun(meanwhile)).reason!, /machine 'db' is in drill/);
    release(started.id);
    await ended(started.id);
  });

  it('cancels a drill past its time limit, records why before the cancel, and counts it as failed with an alert', async () => {
    const run = await requestMachineDrill(ctx, t.machines.db!, {
      point: 'latest-crash-consistent',
      testNetwork: null,
      checks: CHECKS,
      timeLimitSeconds: 1,
      createdBy: 'operator',
    });
    await until(
      'the drill job to run',
      async () => (await ctx.store.jobs.get(run.jobId!))?.state === 'running',
    );
    await scheduler.runOnce();
    assert.equal((await ctx.store.drillRuns.get(run.id))!.state, 'running', 'within its limit');
    await new Promise((r) => setTimeout(r, 1100));
    await scheduler.runOnce();
    const done = await ended(run.id);
    assert.equal(done.state, 'failed');
    assert.equal(done.reason, 'time limit reached: the drill ran longer than 1 s');
    assert.equal(done.machines[0]!.cleanedUp, true);
    const job = await until('its job to end', async () => {
      const j = await ctx.store.jobs.get(run.jobId!);
      return j?.state === 'cancelled' ? j : undefined;
    });
    assert.equal(job.state, 'cancelled');
    const alerts = await ctx.store.alerts.list({ open: true });
    assert.ok(alerts.some((a) => a.key === `drill-failed:machine:${t.machines.db!.id}`));
  });

  it('cleans up again, each tick, what an ended drill left at an unreachable host, and says when it was cleaned', async () => {
    const hostId = t.machines.web!.recoveryHostId!;
    const copy = { hostId, viewId: 'drill-view-1', vmName: 'web-drill-1', network: 'haven-test' };
    const away = `host 'web-recovery' did not reconnect within 60 s of the vault restart; the vault removes the drill machine and overlay once it does`;
    const run: DrillRun = {
      id: randomUUID(),
      scheduleId: null,
      target: machine('web'),
      targetName: 'web',
      jobId: null,
      state: 'interrupted',
      reason: `the vault restarted during the drill; its machine and overlay are not removed yet: ${away}`,
      machines: [
        {
          machineId: t.machines.web!.id,
          machineName: 'web',
          point: null,
          copy,
          rtoSeconds: null,
          checks: [],
          cleanedUp: false,
        },
      ],
      rtoSeconds: null,
      checks: [],
      createdBy: 'admin',
      createdAt: new Date().toISOString(),
      startedAt: new Date().toISOString(),
      endedAt: new Date().toISOString(),
    };
    await ctx.store.drillRuns.create(run);
    // The host is away: nothing is claimed done.
    await scheduler.runOnce();
    assert.equal((await ctx.store.drillRuns.get(run.id))!.machines[0]!.cleanedUp, false);
    // It is back (a host double that remembers what it was asked).
    const calls: string[] = [];
    const back = new DrillScheduler({
      ...ctx,
      hosts: {
        isConnected: () => true,
        call: async <T>(_host: string, method: string): Promise<T> => {
          calls.push(method);
          if (method === 'hypervisor.status') return { state: 'absent' } as T;
          if (method === 'replica.viewInfo') throw notFound('view', copy.viewId);
          return {} as T;
        },
      },
    });
    await back.runOnce();
    const cleaned = (await ctx.store.drillRuns.get(run.id))!;
    assert.equal(cleaned.machines[0]!.cleanedUp, true);
    assert.equal(cleaned.state, 'interrupted');
    assert.match(
      cleaned.reason!,
      /^the vault restarted during the drill; its machine and overlay are not removed yet: host .+; cleaned up at \d{4}-/,
    );
    assert.ok(calls.includes('hypervisor.undefine') && calls.includes('replica.closeView'), calls.join());
    // Done: not touched again.
    calls.length = 0;
    await back.runOnce();
    assert.deepEqual(calls, []);
  });

  it('marks a running drill whose job is gone as interrupted', async () => {
    const run: DrillRun = {
      id: randomUUID(),
      scheduleId: null,
      target: machine('app'),
      targetName: 'app',
      jobId: randomUUID(),
      state: 'running',
      reason: null,
      machines: [],
      rtoSeconds: null,
      checks: [],
      createdBy: 'admin',
      createdAt: new Date().toISOString(),
      startedAt: new Date().toISOString(),
      endedAt: null,
    };
    await ctx.store.drillRuns.create(run);
    await scheduler.runOnce();
    const after = (await ctx.store.drillRuns.get(run.id))!;
    assert.equal(after.state, 'interrupted');
    assert.equal(after.reason, 'its job was never started');
  });

  it('alerts when a scheduled machine has had no passing drill for longer than the set age; a pass clears it', async () => {
    const strict = new DrillScheduler(ctx, { maxAgeWithoutPassMs: 60_000 });
    const key = drillOverdueAlertKey(machine('fail-mail'));
    const open = async () => (await ctx.store.alerts.list({ open: true })).find((a) => a.key === key);
    const s = await schedule('mail', machine('fail-mail'), {
      createdAt: new Date(Date.now() - 3 * 3_600_000).toISOString(),
      nextRunAt: null,
    });
    await strict.runOnce();
    const alert = await open();
    assert.ok(alert);
    assert.match(
      alert.message,
      /^Machine 'fail-mail': no drill has passed in the 3 h since it was first scheduled/,
    );
    assert.match(alert.message, /allowed: 1 min$/);
    // A failing drill raises its own alert and does not clear this one.
    await ctx.store.drillSchedules.update({ ...s, nextRunAt: new Date(Date.now() - 1000).toISOString() });
    await strict.runOnce();
    release((await onlyRun(s)).id);
    assert.equal((await ended((await onlyRun(s)).id)).state, 'failed');
    await strict.runOnce();
    assert.ok(await open());
    // Disabled schedules expect nothing: the alert clears.
    await ctx.store.drillSchedules.update({ ...(await ctx.store.drillSchedules.get(s.id))!, enabled: false });
    await strict.runOnce();
    assert.equal(await open(), undefined);
  });
});

describe('drills beside the machine lifecycle', () => {
  let t: PlanTestVault;
  let ctx: VaultContext;

  before(async () => {
    t = await startPlanTestVault(['web', 'db'], 50, {
      jobs: (vault) => [standInDrillJob(drillJob(vault), vault), standInDrillJob(planDrillJob(vault), vault)],
      drillTickMs: 3_600_000,
    });
    ctx = t.vault.context;
  });
  after(async () => {
    await releaseAll(ctx);
    await t.stop();
  });

  const drill = async (name: string) => {
    const run = await requestMachineDrill(ctx, t.machines[name]!, {
      point: 'latest-crash-consistent',
      testNetwork: null,
      checks: CHECKS,
      timeLimitSeconds: 600,
      createdBy: 'admin',
    });
    await until(
      'the drill job to run',
      async () => (await ctx.store.jobs.get(run.jobId!))?.state === 'running',
    );
    return run;
  };

  it('refuses a manual test failover while a drill of the machine runs, naming the drill and how to cancel it', async () => {
    const run = await drill('web');
    const refused = await t.call<{ error: { code: string; message: string } }>(
      'POST',
      `/machines/${t.machines.web!.id}/test-failover`,
      { recoveryPoint: { option: 'latest' } },
    );
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal(
      refused.body.error.message,
      `Machine 'web' (protected) is in drill ${run.id.slice(0, 8)}, running since ${run.startedAt}: a test failover can start when the drill ends, or cancel it: haven jobs cancel ${run.jobId}`,
    );
    assert.equal((await ctx.store.machines.get(t.machines.web!.id))!.state, 'protected');
    release(run.id);
    await until('the drill to pass', async () => (await ctx.store.drillRuns.get(run.id))?.state === 'passed');
    const allowed = await t.call<Job>('POST', `/machines/${t.machines.web!.id}/test-failover`, {
      recoveryPoint: { option: 'latest' },
    });
    assert.equal(allowed.status, 202, JSON.stringify(allowed.body));
  });

  it('a failover cancels the running drill of its machine, records why, and goes on without waiting', async () => {
    const run = await drill('db');
    const failover = await t.call<Job>('POST', `/machines/${t.machines.db!.id}/failover`, {
      recoveryPoint: { option: 'latest' },
    });
    assert.equal(failover.status, 202, JSON.stringify(failover.body));
    assert.equal(failover.body.kind, 'failover');
    const done = await until('the drill to end', async () => {
      const r = await ctx.store.drillRuns.get(run.id);
      return r?.endedAt ? r : undefined;
    });
    assert.equal(done.state, 'cancelled');
    assert.equal(done.reason, 'cancelled: a failover of the machine began');
    assert.equal(done.machines[0]!.cleanedUp, true);
  });
});
