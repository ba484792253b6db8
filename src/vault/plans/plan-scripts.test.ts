import assert from 'node:assert/strict';
import { chmod, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isTerminalJobState } from '../../domain/job-states.ts';
import type { Job, RecoveryPlan, ScriptRunRecord } from '../../domain/model.ts';
import { sqliteFile } from '../../store/index.ts';
import { runHaven } from '../../testing/child-process.ts';
import { type PlanTestVault, startPlanTestVault } from './plan-test-vault.fixture.ts';

/**
 * Plan script actions as a hostile operator would use them, with real
 * processes: the scripts run as the vault's unprivileged script user (the
 * test runs as root, like a vault installed as root), with a clean
 * environment, killed at their time limit, their output bounded and shown
 * to operators and admins only.
 */

let fixture: PlanTestVault;
let call: PlanTestVault['call'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function ended(id: string): Promise<Job> {
  for (let i = 0; i < 400; i++) {
    const { body } = await call<Job>('GET', `/jobs/${id}`);
    if (isTerminalJobState(body.state)) return body;
    await sleep(50);
  }
  throw new Error(`job ${id} did not end`);
}

/** A one-group plan on `machine` whose only action runs `script`, test-failed-over then cleaned up. */
async function runPlan(name: string, machine: string, script: string, timeoutSeconds = 20) {
  const created = await call('POST', '/plans', {
    name,
    groups: [{ name: 'g', machines: [machine], before: [{ kind: 'script', name, script, timeoutSeconds }] }],
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const started = await call<Job>('POST', `/plans/${name}/test-failover`, {
    recoveryPoint: { option: 'latest' },
  });
  assert.equal(started.status, 202, JSON.stringify(started.body));
  const job = await ended(started.body.id);
  const runId = (job.output.actions as Record<string, { runId: string }>)['g1.before.1']!.runId;
  const run = (await call<ScriptRunRecord>('GET', `/script-runs/${runId}`)).body;
  return { job, run };
}

/** Running (a zombie waiting for its reaper is not), waiting up to 2 s for a SIGKILL to land. */
async function stillRunning(pid: number): Promise<boolean> {
  for (let i = 0; i < 40; i++) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
    if (stat === null || stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return false;
    await sleep(50);
  }
  return true;
}

before(async () => {
  assert.equal(process.getuid?.(), 0, 'these tests check the switch away from root: run them as root');
  fixture = await startPlanTestVault(['m-probe', 'm-slow', 'm-view', 'm-loud', 'm-legacy', 'm-bad']);
  ({ call } = fixture);
});

after(() => fixture.stop());

describe('plan script actions', () => {
  it('run as an unprivileged user with a clean environment: the vault token and database stay out of reach', async () => {
    const dataDir = fixture.dataDir;
    process.env.PROBE_VAULT_SECRET = 'vault-env-secret';
    try {
      await fixture.addScript(
        'probe',
        [
          '#!/bin/sh',
          'echo "uid=$(id -u) user=$(id -un) groups=$(id -G)"',
          'echo "pwd=$PWD"',
          'echo "--- env"',
          'env | sort',
          'echo "--- end env"',
          `cat ${join(dataDir, 'admin.token')} && echo READ-TOKEN`,
          `head -c 16 ${sqliteFile(dataDir)} && echo READ-DB`,
          `echo 'echo pwned' > ${join(fixture.scriptsDir, 'mine')} && echo WROTE-SCRIPT`,
          'exit 0',
        ].join('\n'),
      );
      const { job, run } = await runPlan('probe', 'm-probe', 'probe');
      assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
      const output = run.output;
      const uid = Number(output.match(/^uid=(\d+)/m)?.[1]);
      assert.ok(uid > 0, output);
      assert.match(output, new RegExp(`user=${fixture.scriptUser} `));
      assert.doesNotMatch(output, /groups=.*\b0\b/, 'no root group either');
      assert.equal(run.runAs, fixture.scriptUser);
      assert.match(run.runAsNote, /dedicated script user/);
      assert.equal(run.startedBy, 'admin');

      const token = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim();
      assert.ok(!output.includes(token), 'the admin token was read');
      assert.doesNotMatch(output, /READ-TOKEN|READ-DB|WROTE-SCRIPT/);
      assert.doesNotMatch(output, /SQLite format/);

      const pwd = output.match(/^pwd=(.*)$/m)![1]!;
      assert.ok(!pwd.startsWith(dataDir), pwd);
      const env = output.split('--- env\n')[1]!.split('--- end env')[0]!;
      const names = env
        .trim()
        .split('\n')
        .map((line) => line.split('=')[0]!);
      const allowed = new Set(['PATH', 'HOME', 'TMPDIR', 'LANG', 'PWD', 'OLDPWD', 'SHLVL', '_']);
      assert.deepEqual(
        names.filter((n) => !allowed.has(n) && !n.startsWith('HAVEN_')),
        [],
        env,
      );
      assert.ok(!env.includes('vault-env-secret') && !env.includes(dataDir), env);
      for (const name of ['HAVEN_PLAN=probe', 'HAVEN_GROUP=g', 'HAVEN_OPERATION=test-failover'])
        assert.ok(env.includes(name), env);
      assert.match(env, /^PATH=\/usr\/local\/sbin:\/usr\/local\/bin:\/usr\/sbin:\/usr\/bin:\/sbin:\/bin$/m);
    } finally {
      delete process.env.PROBE_VAULT_SECRET;
    }
  });

  it('cannot be written into a plan by an operator: inline commands and unknown scripts get a 400 naming the field', async () => {
    const operator = await fixture.callAs('operator');
    const inline = {
      name: 'inline',
      groups: [
        { name: 'g', machines: ['m-bad'], before: [{ kind: 'script', name: 'x', text: 'cat /etc/shadow' }] },
      ],
    };
    type Refusal = { error: { message: string; details: { field: string } } };
    const created = await operator<Refusal>('POST', '/plans', inline);
    assert.equal(created.status, 400, JSON.stringify(created.body));
    assert.equal(created.body.error.details.field, 'groups[0].before[0].text');
    assert.match(
      created.body.error.message,
      new RegExp(`executable file in the vault's scripts folder \\(${fixture.scriptsDir}\\).*'script: NAME'`),
    );

    const imported = await operator<Refusal>('POST', '/plans/import', {
      format: 'json',
      content: JSON.stringify(inline),
    });
    assert.equal(imported.status, 400, JSON.stringify(imported.body));
    assert.equal(imported.body.error.details.field, 'groups[0].before[0].text');

    const plain = { name: 'plain', groups: [{ name: 'g', machines: ['m-bad'] }] };
    assert.equal((await operator('POST', '/plans', plain)).status, 201);
    const replaced = await operator<Refusal>('PUT', '/plans/plain', inline);
    assert.equal(replaced.status, 400, JSON.stringify(replaced.body));
    assert.equal(replaced.body.error.details.field, 'groups[0].before[0].text');

    const unknown = await operator<Refusal>('PUT', '/plans/plain', {
      ...plain,
      groups: [{ name: 'g', machines: ['m-bad'], after: [{ kind: 'script', name: 'x', script: 'nope' }] }],
    });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.error.details.field, 'groups[0].after[0].script');
    assert.match(unknown.body.error.message, /script 'nope' is not registered/);

    // A file someone other than root could change is listed with its problem and cannot be named.
    await fixture.addScript('loose', '#!/bin/sh\ntrue\n');
    await chmod(join(fixture.scriptsDir, 'loose'), 0o777);
    const listed = await operator<{ scripts: { name: string; problem: string | null }[] }>('GET', '/scripts');
    assert.equal(listed.status, 200);
    assert.match(
      listed.body.scripts.find((s) => s.name === 'loose')!.problem!,
      /can be changed by other users/,
    );
    const loose = await operator<Refusal>('PUT', '/plans/plain', {
      ...plain,
      groups: [{ name: 'g', machines: ['m-bad'], after: [{ kind: 'script', name: 'x', script: 'loose' }] }],
    });
    assert.equal(loose.status, 400);
    assert.equal((await (await fixture.callAs('viewer'))('GET', '/scripts')).status, 403);

    const cli = await runHaven(['scripts', 'list', '--url', fixture.vault.url, '--token', fixture.token]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /scripts folder: .*\n[\s\S]*loose .*can be changed by other users/);
  });

  it('refuses to run a plan that still holds an inline command from before scripts were registered', async () => {
    const { machines, vault } = fixture;
    const now = new Date().toISOString();
    const legacy: RecoveryPlan = {
      id: 'legacy-plan',
      name: 'legacy',
      description: '',
      groups: [
        {
          name: 'g',
          machineIds: [machines['m-legacy']!.id],
          before: [{ kind: 'inline-script', name: 'dns', text: 'id > /tmp/pwned', timeoutSeconds: null }],
          after: [],
        },
      ],
      createdAt: now,
      updatedAt: now,
    };
    await vault.context.store.plans.create(legacy);
    const refused = await call<{ error: { message: string } }>('POST', '/plans/legacy/test-failover', {
      recoveryPoint: { option: 'latest' },
    });
    assert.equal(refused.status, 409);
    assert.match(refused.body.error.message, /action 'dns' before its machines holds an inline command/);
    const exported = await call<Record<string, unknown>>('GET', '/plans/legacy/export');
    const again = await call<{ error: { details: { field: string } } }>('POST', '/plans/import', {
      format: 'json',
      content: JSON.stringify(exported.body),
      replace: true,
    });
    assert.equal(again.status, 400);
    assert.equal(again.body.error.details.field, 'groups[0].before[0].text');
  });

  it('kills a script at its time limit with everything it started, and records the run', async () => {
    await fixture.addScript('hang', '#!/bin/sh\nsleep 300 &\necho "child $!"\necho "self $$"\nsleep 300\n');
    const started = Date.now();
    const { job, run } = await runPlan('hang', 'm-slow', 'hang', 1);
    assert.ok(Date.now() - started < 10_000);
    assert.equal(job.state, 'failed');
    assert.match(
      job.error!.message,
      /Script action 'hang' \(group 'g'\) did not finish within 1 s and was killed/,
    );
    assert.equal(run.state, 'timed-out');
    assert.ok(run.finishedAt && run.finishedAt >= run.startedAt);
    assert.equal(run.signal, 'SIGKILL');
    for (const pid of [...run.output.matchAll(/(?:child|self) (\d+)/g)].map((m) => Number(m[1]))) {
      assert.ok(pid > 0);
      assert.equal(await stillRunning(pid), false, `process ${pid} of the script is still running`);
    }
  });

  it('keeps the start and the end of a long output and says it was cut', async () => {
    await fixture.addScript(
      'loud',
      '#!/bin/sh\necho BEGIN\nhead -c 200000 /dev/zero | tr "\\0" x\necho\necho END\n',
    );
    const { job, run } = await runPlan('loud', 'm-loud', 'loud');
    assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
    assert.equal(run.outputTruncated, true);
    assert.equal(run.outputBytes, 6 + 200_000 + 1 + 4);
    assert.ok(run.output.startsWith('BEGIN\nxxx'));
    assert.ok(run.output.endsWith('xxx\nEND\n'));
    assert.match(run.output, /\[… \d+ bytes of output cut …\]/);
    assert.ok(run.output.length < 70 * 1024);
  });

  it('shows viewers how a run ended, never its output', async () => {
    await fixture.addScript('chatty', '#!/bin/sh\necho "db password is hunter2"\nexit 4\n');
    const { job, run } = await runPlan('chatty', 'm-view', 'chatty');
    assert.equal(job.state, 'failed');
    assert.equal(run.output, 'db password is hunter2\n', 'operators and admins see it');
    const viewer = await fixture.callAs('viewer');
    const operator = await fixture.callAs('operator');

    const viewedJob = await viewer<Job>('GET', `/jobs/${job.id}`);
    assert.equal(viewedJob.status, 200);
    assert.doesNotMatch(JSON.stringify(viewedJob.body), /hunter2/);
    assert.match(viewedJob.body.error!.message, /failed with exit code 4/);
    const viewedRun = await viewer<Record<string, unknown>>('GET', `/script-runs/${run.id}`);
    assert.equal(viewedRun.status, 200);
    assert.equal(viewedRun.body.state, 'failed');
    assert.equal(viewedRun.body.exitCode, 4);
    assert.equal('output' in viewedRun.body, false);
    const listed = await viewer<{ runs: Record<string, unknown>[] }>('GET', `/script-runs?jobId=${job.id}`);
    assert.deepEqual(
      listed.body.runs.map((r) => [r.id, 'output' in r]),
      [[run.id, false]],
    );
    const operatorView = await operator<ScriptRunRecord>('GET', `/script-runs/${run.id}`);
    assert.equal(operatorView.body.output, 'db password is hunter2\n');
  });
});
