import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningVault } from '../../app/start-vault.ts';
import { isTerminalJobState } from '../../domain/job-states.ts';
import type { Job, Machine, ScriptRunRecord } from '../../domain/model.ts';
import { type PlanTestVault, startPlanTestVault } from '../../vault/plans/plan-test-vault.fixture.ts';

let fixture: PlanTestVault;
let vault: RunningVault;
let machines: Record<string, Machine>;
let call: PlanTestVault['call'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function jobUntil(id: string, done: (job: Job) => boolean): Promise<Job> {
  for (let i = 0; i < 300; i++) {
    const { body } = await call<Job>('GET', `/jobs/${id}`);
    if (done(body)) return body;
    await sleep(50);
  }
  throw new Error(`job ${id} did not get there`);
}

const ended = (job: Job) => isTerminalJobState(job.state);

before(async () => {
  fixture = await startPlanTestVault(['db-1', 'web-1', 'web-2', 'fail-1', 'spare']);
  ({ vault, machines, call } = fixture);
  await fixture.addScript(
    'marker',
    '#!/bin/sh\necho "$HAVEN_PLAN|$HAVEN_GROUP|$HAVEN_OPERATION|$HAVEN_MACHINES|$HAVEN_DIRECTION"\n',
  );
  await fixture.addScript('slow', '#!/bin/sh\necho started; sleep 30\n');
  await fixture.addScript('broken', '#!/bin/sh\necho oops >&2; exit 3\n');
});

after(() => fixture.stop());

const runOf = async (id: string) => (await call<ScriptRunRecord>('GET', `/script-runs/${id}`)).body;
const appPlan = {
  name: 'app',
  description: 'database first, then the web tier',
  groups: [
    {
      name: 'db',
      machines: ['db-1'],
      after: [
        { kind: 'script', name: 'marker', script: 'marker', timeoutSeconds: 10 },
        { kind: 'manual', name: 'check db', text: 'Log in to db-1 and check replication lag' },
      ],
    },
    { name: 'web', machines: ['web-1', 'web-2'] },
  ],
};

describe('recovery plans API', () => {
  it('creates, shows, lists, exports as JSON and YAML, and imports back', async () => {
    const created = await call<{ id: string; rtoEstimateSeconds: number | null }>('POST', '/plans', appPlan);
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.rtoEstimateSeconds, null);
    const shown = await call<{ groups: { machineIds: string[]; machineNames: string[] }[] }>(
      'GET',
      '/plans/app',
    );
    assert.deepEqual(shown.body.groups[1]!.machineIds, [machines['web-1']!.id, machines['web-2']!.id]);
    assert.deepEqual(shown.body.groups[1]!.machineNames, ['web-1', 'web-2']);
    assert.equal((await call<{ plans: unknown[] }>('GET', '/plans')).body.plans.length, 1);

    const json = await call<Record<string, unknown>>('GET', '/plans/app/export');
    assert.deepEqual(json.body.groups, [
      { ...appPlan.groups[0], before: [] },
      { ...appPlan.groups[1], before: [], after: [] },
    ]);
    const yaml = await call<string>('GET', '/plans/app/export?format=yaml');
    assert.match(yaml.type ?? '', /yaml/);
    assert.match(yaml.body, /^name: app\n/);
    assert.ok(
      yaml.body.indexOf('name: marker') < yaml.body.indexOf('name: check db'),
      'actions keep their order',
    );

    const again = await call('POST', '/plans/import', { format: 'yaml', content: yaml.body });
    assert.equal(again.status, 409);
    const renamed = yaml.body.replace(/^name: app$/m, 'name: app-copy');
    const imported = await call<{ id: string; name: string }>('POST', '/plans/import', {
      format: 'yaml',
      content: renamed,
    });
    assert.equal(imported.status, 201, JSON.stringify(imported.body));
    const copy = await call<Record<string, unknown>>('GET', '/plans/app-copy/export');
    assert.deepEqual({ ...copy.body, name: 'app' }, json.body);
    const bad = await call<{ error: { message: string } }>('POST', '/plans/import', {
      format: 'yaml',
      content: 'name: [unclosed',
    });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /not valid YAML/);
    assert.equal((await call('DELETE', '/plans/app-copy')).status, 204);
  });

  it('refuses bad plans with a message naming the problem', async () => {
    const refuse = async (groups: unknown, pattern: RegExp, status = 400) => {
      const { status: got, body } = await call<{ error: { message: string } }>('POST', '/plans', {
        name: 'bad',
        groups,
      });
      assert.equal(got, status, JSON.stringify(body));
      assert.match(body.error.message, pattern);
    };
    await refuse(
      [
        { name: 'a', machines: ['db-1'] },
        { name: 'b', machines: ['db-1'] },
      ],
      /Machine 'db-1' is in group 'a' and in group 'b'.*cycle/,
    );
    await refuse([{ name: 'a', machines: ['nope'] }], /machine 'nope' does not exist/);
    await refuse(
      [{ name: 'a', machines: Array.from({ length: 101 }, () => 'db-1') }],
      /lists machine 'db-1' twice.*and 100 more problems/,
    );
  });

  it('runs test failover group by group, waits at the manual action until resumed, records the script', async () => {
    const { status, body: job } = await call<Job>('POST', '/plans/app/test-failover', {
      recoveryPoint: { option: 'latest' },
    });
    assert.equal(status, 202, JSON.stringify(job));
    assert.deepEqual(
      job.steps.map((s) => s.name),
      [
        `g1.machine.${machines['db-1']!.id}`,
        'g1.after.1',
        'g1.after.2',
        `g2.machine.${machines['web-1']!.id}`,
        `g2.machine.${machines['web-2']!.id}`,
      ],
    );
    const waiting = await jobUntil(job.id, (j) => j.state === 'waiting' || ended(j));
    assert.equal(waiting.state, 'waiting', JSON.stringify(waiting.error));
    assert.match(waiting.steps[2]!.message!, /Log in to db-1 and check replication lag/);
    assert.equal(waiting.steps[3]!.state, 'pending');
    // Nothing of group 2 has started while waiting.
    assert.equal((await vault.context.store.machines.get(machines['web-1']!.id))!.state, 'protected');
    const actions = waiting.output.actions as Record<string, { runId: string; exitCode: number }>;
    assert.equal(actions['g1.after.1']!.exitCode, 0);
    const marker = await runOf(actions['g1.after.1']!.runId);
    assert.deepEqual(
      [marker.state, marker.script, marker.output],
      ['succeeded', 'marker', 'app|db|test-failover|db-1|primary-to-recovery\n'],
    );

    // Another run of the same plan, or a plan with its machines, is refused meanwhile.
    const twice = await call<{ error: { message: string } }>('POST', '/plans/app/test-failover', {
      recoveryPoint: { option: 'latest' },
    });
    assert.equal(twice.status, 409);
    assert.match(twice.body.error.message, new RegExp(`already has job ${job.id}`));
    const overlapping = await call<{ error: { message: string } }>('POST', '/plans', {
      name: 'overlap',
      groups: [{ name: 'x', machines: ['web-2'] }],
    });
    assert.equal(overlapping.status, 409);
    assert.match(overlapping.body.error.message, /'web-2' is being moved by job .* of plan 'app'/);

    const resumed = await call<Job>('POST', `/jobs/${job.id}/resume`);
    assert.equal(resumed.status, 202, JSON.stringify(resumed.body));
    const done = await jobUntil(job.id, ended);
    assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
    const [db, , manual, web1, web2] = done.steps;
    // Group 2 started only after group 1's machine job and its after actions ended.
    const records = done.output.machines as Record<string, { jobId: string }>;
    const machineJob = async (name: string) =>
      (await call<Job>('GET', `/jobs/${records[machines[name]!.id]!.jobId}`)).body;
    const [dbJob, web1Job, web2Job] = [
      await machineJob('db-1'),
      await machineJob('web-1'),
      await machineJob('web-2'),
    ];
    assert.ok(dbJob.finishedAt! <= manual!.finishedAt!);
    assert.ok(manual!.finishedAt! <= web1!.startedAt!);
    assert.ok(dbJob.finishedAt! < web1Job.startedAt! && dbJob.finishedAt! < web2Job.startedAt!);
    // Within a group the machines run together: web-2's job started before web-1's ended.
    assert.ok(web2Job.startedAt! < web1Job.finishedAt!, 'group members run concurrently');
    assert.ok(db!.finishedAt! <= web2!.finishedAt!);
    for (const name of ['db-1', 'web-1', 'web-2'])
      assert.equal(
        (await vault.context.store.machines.get(machines[name]!.id))!.state,
        'test-failover-active',
      );

    // Now there is history: an estimate, = db + script + slowest web machine.
    const shown = await call<{ rtoEstimateSeconds: number; rtoEstimate: { groups: { seconds: number }[] } }>(
      'GET',
      '/plans/app',
    );
    assert.ok(shown.body.rtoEstimateSeconds > 0.3, String(shown.body.rtoEstimateSeconds));
    assert.equal(shown.body.rtoEstimate.groups.length, 2);
    assert.ok(
      Math.abs(
        shown.body.rtoEstimateSeconds - shown.body.rtoEstimate.groups.reduce((a, g) => a + g.seconds, 0),
      ) < 0.2,
    );

    const notWaiting = await call<{ error: { message: string } }>('POST', `/jobs/${job.id}/resume`);
    assert.equal(notWaiting.status, 409);
    assert.match(notWaiting.body.error.message, /is succeeded: only a job waiting/);
  });

  it('refuses a run when a machine is not in a state that allows it, naming every such machine', async () => {
    const { status, body } = await call<{ error: { message: string } }>('POST', '/plans/app/test-failover', {
      recoveryPoint: { option: 'latest' },
    });
    assert.equal(status, 409);
    assert.match(
      body.error.message,
      /Plan 'app' cannot run test-failover: .*db-1.*web-1.*web-2.*No machine was changed/,
    );
  });

  it("fails the plan when a machine's job fails, says which, and does not start later groups", async () => {
    await call('POST', '/plans', {
      name: 'fragile',
      groups: [
        { name: 'first', machines: ['fail-1'] },
        { name: 'second', machines: ['spare'] },
      ],
    });
    const { body: job } = await call<Job>('POST', '/plans/fragile/test-failover', {
      recoveryPoint: { option: 'latest' },
    });
    const done = await jobUntil(job.id, ended);
    assert.equal(done.state, 'failed');
    assert.match(
      done.error!.message,
      /Machine 'fail-1' \(group 'first'\): its test-failover job .* failed: host kvm-b is gone/,
    );
    assert.deepEqual(
      done.steps.map((s) => s.state),
      ['failed', 'skipped'],
    );
    assert.equal((await vault.context.store.machines.get(machines.spare!.id))!.state, 'protected');
  });

  it('fails a script action that times out or exits non-zero, with its output', async () => {
    await call('POST', '/plans', {
      name: 'scripts',
      groups: [
        {
          name: 'only',
          machines: ['spare'],
          before: [{ kind: 'script', name: 'slow', script: 'slow', timeoutSeconds: 1 }],
        },
      ],
    });
    const started = Date.now();
    const { body: job } = await call<Job>('POST', '/plans/scripts/test-failover', {
      recoveryPoint: { option: 'latest' },
    });
    const done = await jobUntil(job.id, ended);
    assert.ok(Date.now() - started < 5000);
    assert.equal(done.state, 'failed');
    assert.match(
      done.error!.message,
      /Script action 'slow' \(group 'only'\) did not finish within 1 s and was killed/,
    );
    const slow = await runOf(
      (done.output.actions as Record<string, { runId: string }>)['g1.before.1']!.runId,
    );
    assert.deepEqual([slow.state, slow.output], ['timed-out', 'started\n']);
    assert.equal((await vault.context.store.machines.get(machines.spare!.id))!.state, 'protected');

    await call('PUT', '/plans/scripts', {
      name: 'scripts',
      groups: [
        {
          name: 'only',
          machines: ['spare'],
          before: [{ kind: 'script', name: 'broken', script: 'broken' }],
        },
      ],
    });
    const { body: second } = await call<Job>('POST', '/plans/scripts/test-failover', {
      recoveryPoint: { option: 'latest' },
    });
    const failed = await jobUntil(second.id, ended);
    assert.match(
      failed.error!.message,
      /Script action 'broken' \(group 'only'\) failed with exit code 3 \(run .*haven scripts output/,
    );
    const broken = await runOf(
      (failed.output.actions as Record<string, { runId: string }>)['g1.before.1']!.runId,
    );
    assert.deepEqual([broken.state, broken.exitCode, broken.output], ['failed', 3, 'oops\n']);
  });
});
