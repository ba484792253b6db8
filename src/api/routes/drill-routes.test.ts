import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { DrillReport, DrillRun, DrillSchedule, TargetProof } from '../../domain/drill.ts';
import type { Job } from '../../domain/model.ts';
import { type PlanTestVault, startPlanTestVault } from '../../vault/plans/plan-test-vault.fixture.ts';

let fixture: PlanTestVault;
let call: PlanTestVault['call'];

type Refusal = { error: { code: string; message: string; details: { field?: string } } };
type Presented = DrillSchedule & { targetName: string | null };

const nightly = {
  name: 'nightly-db',
  target: { kind: 'machine', machine: 'db-1' },
  cadence: { kind: 'daily', at: '02:00', timeZone: 'Europe/Amsterdam' },
  checks: { filesystems: true, script: { name: 'check-db', timeoutSeconds: 60 } },
};

/** A drill as the drill job leaves it, stored directly: the report does not need real guests. */
function storedRun(machineId: string, overrides: Partial<DrillRun> = {}): DrillRun {
  return {
    id: randomUUID(),
    scheduleId: null,
    target: { kind: 'machine', machineId },
    targetName: 'db-1',
    jobId: null,
    state: 'passed',
    reason: null,
    machines: [
      {
        machineId,
        machineName: 'db-1',
        point: { id: 'db-1@7', time: '2026-12-05T01:59:00.000Z', type: 'app-consistent' },
        copy: { hostId: 'h', viewId: 'drill-v', vmName: 'db-1-drill', network: 'haven-test' },
        rtoSeconds: 21.5,
        checks: [
          {
            kind: 'boot',
            name: 'boot',
            result: 'passed',
            summary: 'up: console output 12.0 s after start',
            evidence: 'db-1 login: <b>',
            evidenceIsScriptOutput: false,
            startedAt: '2026-12-05T02:00:05.000Z',
            durationMs: 12_000,
          },
          {
            kind: 'application',
            name: 'script check-db',
            result: 'passed',
            summary: 'exit 0',
            evidence: 'orders=1204 secret-ish <script>alert(1)</script>',
            evidenceIsScriptOutput: true,
            startedAt: '2026-12-05T02:00:20.000Z',
            durationMs: 1500,
          },
        ],
        cleanedUp: true,
      },
    ],
    rtoSeconds: 21.5,
    checks: [],
    createdBy: 'ops',
    createdAt: '2026-12-05T02:00:00.000Z',
    startedAt: '2026-12-05T02:00:00.000Z',
    endedAt: '2026-12-05T02:00:40.000Z',
    ...overrides,
  };
}

before(async () => {
  fixture = await startPlanTestVault(['db-1', 'web-1']);
  ({ call } = fixture);
  await fixture.addScript('check-db', '#!/bin/sh\necho ok\n');
});
after(() => fixture.stop());

describe('drill schedules API', () => {
  it('creates a schedule (target by name), computes its next run, shows it by name, disables, deletes', async () => {
    const created = await call<Presented>('POST', '/drill-schedules', nightly);
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const s = created.body;
    assert.deepEqual(s.target, { kind: 'machine', machineId: fixture.machines['db-1']!.id });
    assert.equal(s.targetName, 'db-1');
    assert.equal(s.point, 'latest-crash-consistent');
    assert.equal(s.onConflict, 'wait');
    assert.equal(s.enabled, true);
    // 02:00 in Amsterdam is 01:00 UTC in December, within the next day.
    assert.match(s.nextRunAt ?? '', /T01:00:00\.000Z$/);
    assert.ok(Date.parse(s.nextRunAt!) > Date.now() && Date.parse(s.nextRunAt!) <= Date.now() + 86_400_000);

    const shown = await call<Presented>('GET', '/drill-schedules/nightly-db');
    assert.equal(shown.body.id, s.id);
    const listed = await call<{ schedules: Presented[] }>('GET', '/drill-schedules');
    assert.deepEqual(
      listed.body.schedules.map((x) => x.name),
      ['nightly-db'],
    );

    const disabled = await call<Presented>('PUT', `/drill-schedules/${s.id}`, { ...nightly, enabled: false });
    assert.equal(disabled.status, 200, JSON.stringify(disabled.body));
    assert.equal(disabled.body.nextRunAt, null);
    assert.equal(disabled.body.createdAt, s.createdAt);
    const every = await call<Presented>('PUT', '/drill-schedules/nightly-db', {
      ...nightly,
      cadence: { kind: 'every', hours: 6 },
    });
    assert.ok(Math.abs(Date.parse(every.body.nextRunAt!) - (Date.now() + 6 * 3_600_000)) < 60_000);

    const twice = await call<Refusal>('POST', '/drill-schedules', nightly);
    assert.equal(twice.status, 409);
    assert.match(twice.body.error.message, /named 'nightly-db' already exists/);

    assert.equal((await call('DELETE', '/drill-schedules/nightly-db')).status, 204);
    assert.equal((await call('GET', `/drill-schedules/${s.id}`)).status, 404);
  });

  it('refuses bad input at the request, naming the field', async () => {
    const refused = async (change: Record<string, unknown>, field: string, message: RegExp) => {
      const { status, body } = await call<Refusal>('POST', '/drill-schedules', { ...nightly, ...change });
      assert.equal(status, 400, `${field}: ${JSON.stringify(body)}`);
      assert.equal(body.error.details.field, field);
      assert.match(body.error.message, message);
    };
    await refused({ cadence: { kind: 'daily', at: '25:00', timeZone: 'UTC' } }, 'cadence.at', /HH:MM/);
    await refused(
      { cadence: { kind: 'daily', at: '02:00', timeZone: 'Mars/Olympus' } },
      'cadence.timeZone',
      /not a time zone/,
    );
    await refused({ cadence: { kind: 'every', hours: 0 } }, 'cadence.hours', /between 1 and/);
    await refused({ cadence: { kind: 'weekly' } }, 'cadence.kind', /./);
    await refused({ point: 'oldest' }, 'point', /latest-app-consistent/);
    await refused(
      { target: { kind: 'machine', machine: 'nope' } },
      'target.machine',
      /machine 'nope' does not exist/,
    );
    await refused(
      { target: { kind: 'plan', plan: 'nope' } },
      'target.plan',
      /recovery plan 'nope' does not exist/,
    );
    await refused(
      { checks: { filesystems: true, script: { name: 'rm-rf', timeoutSeconds: 10 } } },
      'checks.script.name',
      /script 'rm-rf' is not registered/,
    );
    await refused(
      {
        timeLimitSeconds: 120,
        checks: { filesystems: true, script: { name: 'check-db', timeoutSeconds: 300 } },
      },
      'checks.script.timeoutSeconds',
      /shorter than the drill's time limit of 120 s/,
    );
    await refused({ timeLimitSeconds: 5 }, 'timeLimitSeconds', /./);
    await refused({ maxConcurrentPerHost: 0 }, 'maxConcurrentPerHost', /./);
    await refused({ testNetwork: 'a b' }, 'testNetwork', /network name/);
    await refused({ onConflict: 'queue' }, 'onConflict', /./);
    await refused({ name: 'Bad Name' }, 'name', /lowercase/);
  });

  it('lets viewers read schedules but not write them', async () => {
    const viewer = await fixture.callAs('viewer');
    const operator = await fixture.callAs('operator');
    const made = await operator<Presented>('POST', '/drill-schedules', { ...nightly, name: 'by-operator' });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    assert.equal((await viewer('POST', '/drill-schedules', { ...nightly, name: 'by-viewer' })).status, 403);
    assert.equal((await viewer('PUT', '/drill-schedules/by-operator', nightly)).status, 403);
    assert.equal((await viewer('DELETE', '/drill-schedules/by-operator')).status, 403);
    assert.equal((await viewer('GET', '/drill-schedules/by-operator')).status, 200);
    assert.equal((await viewer('POST', '/machines/db-1/drills', {})).status, 403);
  });
});

describe('drills API', () => {
  it('runs a drill now: 202 with the drill and its job; the settings are checked first', async () => {
    const bad = await call<Refusal>('POST', '/machines/web-1/drills', {
      checks: { filesystems: false, script: { name: 'nope', timeoutSeconds: 10 } },
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.details.field, 'checks.script.name');
    const badPattern = await call<Refusal>('POST', '/machines/web-1/drills', {
      checks: { boot: { consolePattern: '(unclosed', timeoutSeconds: 30 } },
    });
    assert.equal(badPattern.status, 400);
    assert.equal(badPattern.body.error.details.field, 'checks.boot.consolePattern');

    const started = await call<{ drill: DrillRun; job: Job }>('POST', '/machines/web-1/drills', {
      point: 'random-retained',
      timeLimitSeconds: 600,
    });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    assert.equal(started.body.job.kind, 'drill');
    assert.equal(started.body.drill.jobId, started.body.job.id);
    assert.equal(started.body.drill.createdBy, 'admin');
    assert.deepEqual(started.body.job.input.point, 'random-retained');
    const listed = await call<{ drills: DrillRun[] }>('GET', '/drills?machine=web-1');
    assert.deepEqual(
      listed.body.drills.map((d) => d.id),
      [started.body.drill.id],
    );
    assert.equal((await call('GET', '/drills?machine=nope')).status, 404);
    assert.equal((await call('GET', '/drills?state=bogus')).status, 400);
  });

  it('reports a drill for auditors; viewers see every result but no script output', async () => {
    const db = fixture.machines['db-1']!;
    const older = storedRun(db.id, {
      createdAt: '2026-12-04T02:00:00.000Z',
      startedAt: '2026-12-04T02:00:00.000Z',
      endedAt: '2026-12-04T02:00:40.000Z',
    });
    const run = storedRun(db.id);
    const failed = storedRun(db.id, {
      state: 'failed',
      reason: 'script check-db: exit 1',
      createdAt: '2026-12-05T03:00:00.000Z',
      startedAt: '2026-12-05T03:00:00.000Z',
      endedAt: '2026-12-05T03:00:30.000Z',
    });
    failed.machines[0]!.checks[1] = {
      ...failed.machines[0]!.checks[1]!,
      result: 'failed',
      summary: 'exit 1',
    };
    for (const r of [older, run, failed]) await fixture.vault.context.store.drillRuns.create(r);

    const viewer = await fixture.callAs('viewer');
    const full = await call<DrillReport>('GET', `/drills/${run.id}/report`);
    assert.equal(full.status, 200, JSON.stringify(full.body));
    assert.equal(full.body.scriptOutputIncluded, true);
    assert.equal(full.body.startedBy, 'ops');
    assert.equal(full.body.durationSeconds, 40);
    assert.deepEqual(full.body.checks, { passed: 2, failed: 0, notChecked: 0 });
    assert.match(full.body.drill.machines[0]!.checks[1]!.evidence ?? '', /orders=1204/);

    const seen = await viewer<DrillReport>('GET', `/drills/${run.id}/report`);
    assert.equal(seen.status, 200);
    assert.equal(seen.body.scriptOutputIncluded, false);
    const [boot, script] = seen.body.drill.machines[0]!.checks;
    assert.equal(boot!.evidence, 'db-1 login: <b>', 'console evidence is for everyone');
    assert.equal(script!.evidence, null);
    assert.equal(script!.result, 'passed');
    for (const path of [`/drills/${run.id}`, '/drills?machine=db-1']) {
      const text = JSON.stringify((await viewer('GET', path)).body);
      assert.doesNotMatch(text, /orders=1204/, path);
    }
    for (const format of ['markdown', 'html']) {
      const page = await viewer<string>('GET', `/drills/${run.id}/report?format=${format}`);
      assert.equal(page.status, 200);
      assert.match(page.type ?? '', format === 'html' ? /text\/html/ : /text\/markdown/);
      assert.doesNotMatch(page.body, /orders=1204/);
      assert.match(page.body, /operators and admins only/);
    }
    const html = await call<string>('GET', `/drills/${run.id}/report?format=html`);
    assert.match(html.body, /orders=1204 secret-ish &lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.doesNotMatch(html.body, /<script>/);
    const md = await call<string>('GET', `/drills/${run.id}/report?format=markdown`);
    assert.match(md.body, /^# Drill report: db-1$/m);
    assert.match(md.body, /### PASSED: script check-db/);
    assert.match(md.body, /```\norders=1204 secret-ish <script>alert\(1\)<\/script>\n```/);

    const proof = await viewer<TargetProof>('GET', '/machines/db-1/proof');
    assert.equal(proof.status, 200);
    assert.equal(proof.body.lastProven?.drillId, run.id, 'the newest passed drill proves it');
    assert.equal(proof.body.lastProven?.rtoSeconds, 21.5);
    assert.deepEqual(proof.body.lastProven?.points[0]?.point.type, 'app-consistent');
    assert.deepEqual(proof.body.lastDrill, {
      id: failed.id,
      state: 'failed',
      reason: 'script check-db: exit 1',
      endedAt: failed.endedAt,
    });
    const all = await viewer<{ proofs: TargetProof[] }>('GET', '/proofs');
    assert.equal(all.status, 200);
    assert.deepEqual(
      all.body.proofs.find(
        (p) => p.target.kind === 'machine' && JSON.stringify(p.target) === JSON.stringify(proof.body.target),
      ),
      proof.body,
      'every machine in one answer, each as it is alone',
    );
    const passedOnly = await call<{ drills: DrillRun[] }>('GET', '/drills?machine=db-1&state=passed&limit=1');
    assert.deepEqual(
      passedOnly.body.drills.map((d) => d.id),
      [run.id],
    );
    await call('POST', '/plans', { name: 'app', groups: [{ name: 'db', machines: ['db-1'] }] });
    const plan = await call<TargetProof>('GET', '/plans/app/proof');
    assert.equal(plan.status, 200, JSON.stringify(plan.body));
    assert.equal(plan.body.lastProven, null);
    assert.equal(plan.body.lastDrill, null);
    const undrilled = (await viewer<{ proofs: TargetProof[] }>('GET', '/proofs')).body.proofs;
    assert.ok(!undrilled.some((p) => p.target.kind === 'plan'), 'a plan never drilled is not in /proofs');
    // A plan drill: /proofs answers for the plan too, as GET /plans/:id/proof does.
    const planDrill: DrillRun = {
      ...storedRun(db.id),
      target: { kind: 'plan', planId: plan.body.target.kind === 'plan' ? plan.body.target.planId : '' },
      targetName: 'app',
      rtoSeconds: 64,
    };
    await fixture.vault.context.store.drillRuns.create(planDrill);
    const planProof = (await viewer<TargetProof>('GET', '/plans/app/proof')).body;
    assert.equal(planProof.lastProven?.drillId, planDrill.id);
    assert.deepEqual(
      (await viewer<{ proofs: TargetProof[] }>('GET', '/proofs')).body.proofs.filter(
        (p) => p.target.kind === 'plan',
      ),
      [planProof],
    );
    assert.equal((await call('GET', `/drills/${randomUUID()}/report`)).status, 404);
  });
});
