import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DrillRun } from '../../domain/drill.ts';
import { runHaven } from '../../testing/child-process.ts';
import { type PlanTestVault, startPlanTestVault } from '../../vault/plans/plan-test-vault.fixture.ts';

let fixture: PlanTestVault;
const conn = () => ['--url', fixture.vault.url, '--token', fixture.token];
const haven = async (...args: string[]) => {
  const result = await runHaven([...args, ...conn()]);
  return result;
};

before(async () => {
  fixture = await startPlanTestVault(['db-1', 'web-1']);
  await fixture.addScript('check-db', '#!/bin/sh\necho ok\n');
});
after(() => fixture.stop());

describe('haven drills', () => {
  it('creates, shows, edits, disables, enables and deletes a schedule', async () => {
    const created = await haven(
      'drills',
      'schedules',
      'create',
      'nightly-db',
      '--machine',
      'db-1',
      '--daily',
      '02:00',
      '--time-zone',
      'Europe/Amsterdam',
      '--script',
      'check-db',
      '--script-timeout',
      '2m',
      '--time-limit',
      '20m',
    );
    assert.equal(created.code, 0, created.stderr);
    assert.match(
      created.stdout,
      /schedule 'nightly-db' created: daily at 02:00 Europe\/Amsterdam, next run /,
    );

    const shown = await haven('drills', 'schedules', 'show', 'nightly-db');
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /Machine: +db-1/);
    assert.match(shown.stdout, /Checks: +boot, filesystems, script check-db \(2 min\)/);
    assert.match(shown.stdout, /Time limit: +20 min/);

    const edited = await haven(
      'drills',
      'schedules',
      'edit',
      'nightly-db',
      '--every',
      '6h',
      '--no-filesystems',
    );
    assert.equal(edited.code, 0, edited.stderr);
    assert.match(edited.stdout, /Cadence: +every 6 h/);
    assert.match(edited.stdout, /Checks: +boot, script check-db \(2 min\)/, 'what was not given is kept');

    const disabled = await haven('drills', 'schedules', 'disable', 'nightly-db');
    assert.equal(disabled.code, 0, disabled.stderr);
    assert.match(disabled.stdout, /schedule 'nightly-db' disabled\n/);
    const list = await haven('drills', 'schedules', 'list');
    assert.match(list.stdout, /nightly-db\s+machine db-1\s+every 6 h\s+latest-crash-consistent\s+disabled/);
    const enabled = await haven('drills', 'schedules', 'enable', 'nightly-db');
    assert.match(enabled.stdout, /enabled; next run /);

    const typo = await haven('drills', 'schedules', 'edit', 'nightly-db', '--point', 'random-retaned');
    assert.notEqual(typo.code, 0);
    assert.match(typo.stderr, /did you mean random-retained\?/);
    const refused = await haven('drills', 'schedules', 'edit', 'nightly-db', '--script', 'nope');
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /script 'nope' is not registered/);
    const mistyped = await runHaven(['drills', 'schedules', 'lst', ...conn()]);
    assert.match(mistyped.stderr, /did you mean 'drills schedules list'/);

    assert.equal((await haven('drills', 'schedules', 'delete', 'nightly-db')).code, 0);
  });

  it("drills a plan: --plan runs its order; with no host the drill ends before the plan's first group and says so", async () => {
    const plan = await fixture.call('POST', '/plans', {
      name: 'cli-shop',
      groups: [
        {
          name: 'data',
          machines: ['web-1'],
          after: [{ kind: 'manual', name: 'look', text: 'Look at the shop' }],
        },
      ],
    });
    assert.equal(plan.status, 201, JSON.stringify(plan.body));
    const both = await haven('drills', 'run', 'web-1', '--plan', 'cli-shop');
    assert.equal(both.code, 2, both.stdout + both.stderr);
    assert.match(both.stderr, /give a MACHINE or --plan PLAN, not both/);
    const waited = await haven('drills', 'run', '--plan', 'cli-shop', '--wait');
    assert.equal(waited.code, 1, waited.stdout + waited.stderr);
    assert.match(waited.stdout, /Plan: +cli-shop/);
    assert.match(waited.stdout, /web-1: no point chosen, cleaned up/);
    assert.match(
      waited.stdout,
      /The plan's order and actions:\n {2}plan order and actions: FAILED — not reached: Group 1 'data': check the filesystems/,
    );
  });

  it('runs a drill, lists and shows drills with their checks in words, writes the report; machines show says what is proven', async () => {
    const run = await haven('drills', 'run', 'web-1', '--point', 'random-retained', '--time-limit', '10m');
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /drill \S{8} of web-1 started \(job \S{8}\)/);
    const drillId = run.stdout.match(/drill (\S{8})/)![1]!;
    // No host is connected here: the drill fails at its first step, is cleaned up, and --wait says so.
    for (let i = 0; i < 100; i++) {
      const { body } = await fixture.call<{ drills: DrillRun[] }>('GET', '/drills?machine=web-1');
      if (body.drills.every((d) => d.state !== 'running')) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const waited = await haven('drills', 'run', 'web-1', '--wait');
    assert.equal(waited.code, 1, waited.stdout + waited.stderr);
    assert.match(waited.stdout, /drill \S{8} {2}failed/);
    assert.match(waited.stdout, /Choose the recovery point .* failed/);
    assert.match(waited.stdout, /Result: +failed: /);
    assert.match(waited.stdout, /web-1: no point chosen, cleaned up\n {2}\(no checks ran\)/);
    assert.notEqual(waited.stdout.match(/drill (\S{8})/)?.[1], drillId);

    const db = fixture.machines['db-1']!;
    const drill: DrillRun = {
      id: randomUUID(),
      scheduleId: null,
      target: { kind: 'machine', machineId: db.id },
      targetName: 'db-1',
      jobId: null,
      state: 'failed',
      reason: 'filesystem vda1 (ext4): inode table damaged',
      machines: [
        {
          machineId: db.id,
          machineName: 'db-1',
          point: { id: 'p', time: new Date(Date.now() - 3_600_000).toISOString(), type: 'crash-consistent' },
          copy: null,
          rtoSeconds: 30,
          checks: [
            {
              kind: 'boot',
              name: 'boot',
              result: 'passed',
              summary: 'up: console output 20.0 s after start',
              evidence: 'login:',
              evidenceIsScriptOutput: false,
              startedAt: new Date().toISOString(),
              durationMs: 20_000,
            },
            {
              kind: 'filesystems',
              name: 'filesystem vda1 (ext4)',
              result: 'failed',
              summary: 'inode table damaged',
              evidence: 'e2fsck: Inode table for group 0 is not in group',
              evidenceIsScriptOutput: false,
              startedAt: new Date().toISOString(),
              durationMs: 3000,
            },
          ],
          cleanedUp: true,
        },
      ],
      rtoSeconds: 30,
      checks: [],
      createdBy: 'ops',
      createdAt: new Date(Date.now() - 120_000).toISOString(),
      startedAt: new Date(Date.now() - 120_000).toISOString(),
      endedAt: new Date(Date.now() - 60_000).toISOString(),
    };
    const passed: DrillRun = {
      ...drill,
      id: randomUUID(),
      state: 'passed',
      reason: null,
      machines: [{ ...drill.machines[0]!, checks: [drill.machines[0]!.checks[0]!] }],
      createdAt: new Date(Date.now() - 7_200_000).toISOString(),
      startedAt: new Date(Date.now() - 7_200_000).toISOString(),
      endedAt: new Date(Date.now() - 7_100_000).toISOString(),
    };
    await fixture.vault.context.store.drillRuns.create(passed);
    await fixture.vault.context.store.drillRuns.create(drill);

    const list = await haven('drills', 'list', '--machine', 'db-1');
    assert.equal(list.code, 0, list.stderr);
    assert.match(
      list.stdout,
      new RegExp(
        `${drill.id.slice(0, 8)}\\s+machine db-1\\s+failed\\s+\\S+ \\S+ ago\\s+1 min\\s+30 s\\s+1 passed, 1 failed`,
      ),
    );
    assert.equal(list.stdout.trim().split('\n').length, 3, 'db-1 drills only');

    const shown = await haven('drills', 'show', drill.id.slice(0, 8));
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /Result: +failed: filesystem vda1 \(ext4\): inode table damaged/);
    assert.match(shown.stdout, /db-1: crash-consistent point of .*, up after 30 s, cleaned up/);
    assert.match(shown.stdout, / {2}filesystem vda1 \(ext4\): FAILED — inode table damaged \(3 s\)/);

    const file = join(fixture.dataDir, 'drill.html');
    const written = await haven('drills', 'report', drill.id.slice(0, 8), '--out', file);
    assert.equal(written.code, 0, written.stderr);
    const page = await readFile(file, 'utf8');
    assert.match(page, /^<!doctype html>/);
    assert.match(page, /Inode table for group 0/);
    const md = await haven('drills', 'report', drill.id);
    assert.match(md.stdout, /^# Drill report: db-1\n/);

    const machine = await haven('machines', 'show', 'db-1');
    assert.equal(machine.code, 0, machine.stderr);
    assert.match(
      machine.stdout,
      new RegExp(
        `Proven: +crash-consistent point of .*, proven 1 h ago, RTO 30 s, 1 check passed, drill ${passed.id.slice(0, 8)}; last drill ${drill.id.slice(0, 8)} failed: filesystem vda1`,
      ),
    );
  });
});
