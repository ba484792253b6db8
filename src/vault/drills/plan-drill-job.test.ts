import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DrillRun } from '../../domain/drill.ts';
import type { RecoveryPoint } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import { until } from '../../testing/until.ts';
import { type PlanTestVault, startPlanTestVault } from '../plans/plan-test-vault.fixture.ts';
import type { HostGateway, VaultContext } from '../vault-context.ts';
import { drillFailedAlertKey } from './drill-alerts.ts';
import { planDrillJob } from './plan-drill-job.ts';

/**
 * The plan drill job, the real one, in process: its recovery host is a
 * stand-in that keeps the overlays and machines it was asked for (and boots
 * a machine 200 ms after its start), so the plan's order, actions, RTO and
 * clean-up are checked without guests. Real guests: drill-e2e.test.ts.
 */
class StandInHost implements HostGateway {
  readonly views = new Set<string>();
  readonly machines = new Map<string, { running: boolean; startedAt: number; name: string }>();
  /** When each machine was started, in order. */
  readonly starts: string[] = [];

  isConnected(): boolean {
    return true;
  }

  async call<T>(_hostId: string, method: string, params: unknown = {}): Promise<T> {
    const p = params as Record<string, unknown>;
    const answer = (value: unknown) => value as T;
    switch (method) {
      case 'replica.listPoints': {
        const machineId = String(p.machineId);
        const point: RecoveryPoint = {
          id: `${machineId}@1`,
          machineId,
          time: new Date(Date.now() - 60_000).toISOString(),
          sequence: 1,
          type: 'crash-consistent',
          groupPointId: null,
          processed: true,
          sizeBytes: 0,
        };
        return answer([point]);
      }
      case 'replica.openView':
        this.views.add(String(p.viewId));
        return answer({
          viewId: p.viewId,
          disks: [{ diskId: 'disk0', nbdUri: `nbd://stand-in/${p.viewId}` }],
        });
      case 'replica.viewInfo':
        if (!this.views.has(String(p.viewId))) throw new HavenError('not_found', `no view ${p.viewId}`);
        return answer({
          viewId: p.viewId,
          disks: [{ diskId: 'disk0', nbdUri: `nbd://stand-in/${p.viewId}` }],
        });
      case 'replica.closeView':
        this.views.delete(String(p.viewId));
        return answer({});
      case 'hypervisor.inventory':
        return answer({ domains: [] });
      case 'hypervisor.status': {
        const m = this.machines.get(String(p.name));
        return answer({ state: m === undefined ? 'absent' : m.running ? 'running' : 'shut-off' });
      }
      case 'hypervisor.define': {
        const name = (p.machine as { name: string }).name;
        this.machines.set(name, { running: false, startedAt: 0, name });
        return answer({});
      }
      case 'hypervisor.start': {
        const m = this.machines.get(String(p.name))!;
        m.running = true;
        m.startedAt = Date.now();
        this.starts.push(m.name);
        return answer({});
      }
      case 'hypervisor.consoleLog': {
        const m = this.machines.get(String(p.name));
        const up = m?.running && Date.now() - m.startedAt >= 200;
        return answer({ lines: up ? ['haven-guest booted'] : [] });
      }
      case 'hypervisor.fence': {
        const m = this.machines.get(String(p.name));
        if (m) m.running = false;
        return answer({});
      }
      case 'hypervisor.undefine':
        this.machines.delete(String(p.name));
        return answer({});
      default:
        throw new HavenError('internal', `the stand-in host does not answer ${method}`);
    }
  }
}

describe('plan drills', () => {
  let t: PlanTestVault;
  let ctx: VaultContext;
  const host = new StandInHost();
  let operator: Awaited<ReturnType<PlanTestVault['callAs']>>;
  const envFile = join('/tmp', `haven-plan-drill-env-${process.pid}`);

  before(async () => {
    t = await startPlanTestVault(['db', 'web', 'app'], 50, {
      jobs: (vault) => [planDrillJob(() => ({ ...vault(), hosts: host }))],
      drillTickMs: 3_600_000,
    });
    ctx = t.vault.context;
    operator = await t.callAs('operator');
    await t.addScript(
      'note-env',
      `#!/bin/sh\nprintf '%s %s %s\\n' "$HAVEN_OPERATION" "$HAVEN_GROUP" "$HAVEN_MACHINES" >> ${envFile}\n`,
    );
    await t.addScript('fail-now', '#!/bin/sh\necho "DNS not repointed" >&2\nexit 3\n');
  });
  after(async () => {
    await t.stop();
    await rm(envFile, { force: true });
  });

  const ended = (id: string) =>
    until(`drill ${id} to end`, async () => {
      const run = (await t.call<DrillRun>('GET', `/drills/${id}`)).body;
      return run.endedAt !== null && run.machines.every((m) => m.cleanedUp) ? run : undefined;
    });

  it("runs the plan's groups in order with their actions, measures the whole plan's RTO and cleans up", async () => {
    const created = await t.call('POST', '/plans', {
      name: 'shop',
      groups: [
        {
          name: 'data',
          machines: ['db'],
          before: [{ kind: 'script', name: 'note', script: 'note-env', timeoutSeconds: 30 }],
          after: [{ kind: 'manual', name: 'check orders', text: 'Open the shop and place an order' }],
        },
        { name: 'front', machines: ['web', 'app'] },
      ],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const viewer = await t.callAs('viewer');
    assert.equal((await viewer('POST', '/plans/shop/drills', { timeLimitSeconds: 600 })).status, 403);

    const started = await operator<{ drill: DrillRun; job: { id: string; kind: string } }>(
      'POST',
      '/plans/shop/drills',
      { timeLimitSeconds: 600, checks: { filesystems: false, script: null } },
    );
    assert.equal(started.status, 202, JSON.stringify(started.body));
    assert.equal(started.body.job.kind, 'plan-drill');
    assert.deepEqual(
      started.body.drill.machines.map((m) => m.machineName),
      ['db', 'web', 'app'],
    );
    const again = await operator<{ error: { message: string } }>('POST', '/plans/shop/drills', {});
    assert.equal(again.status, 409);
    assert.match(again.body.error.message, /plan 'shop' is already in drill/);

    const run = await ended(started.body.drill.id);
    assert.equal(run.state, 'passed', run.reason ?? '');
    // Group 1's machine first, then group 2's together.
    assert.equal(host.starts[0], `db-drill-${run.id.replace(/-/g, '').slice(0, 8)}`);
    const rto = Object.fromEntries(run.machines.map((m) => [m.machineName, m.rtoSeconds!]));
    assert.ok(rto.web! > rto.db! && rto.app! > rto.db!, JSON.stringify(rto));
    assert.equal(run.rtoSeconds, Math.max(rto.db!, rto.web!, rto.app!));
    for (const m of run.machines) {
      assert.deepEqual(
        m.checks.map((c) => [c.kind, c.result]),
        [['boot', 'passed']],
      );
      assert.equal(m.point?.id, `${m.machineId}@1`);
    }
    const manual = run.checks.find((c) => c.name.startsWith('manual action'))!;
    assert.equal(manual.result, 'not-checked');
    assert.match(manual.summary, /not performed/);
    assert.equal(manual.evidence, 'Open the shop and place an order');
    const order = run.checks.find((c) => c.name === 'plan order and actions')!;
    assert.equal(order.result, 'passed', order.summary);
    assert.match(
      order.summary,
      /2 group\(s\) in order, 3 machine\(s\) up after .* 1 manual action\(s\) not performed/,
    );
    assert.match(order.evidence!, /Group 1 'data': from .* s to .* s after the drill's start/);
    assert.match(order.evidence!, /Group 2 'front'/);
    assert.match(order.evidence!, /web: up at [\d.]+ s/);
    // The script ran as a plan's test failover runs it, told it is a drill.
    assert.equal((await readFile(envFile, 'utf8')).trim(), 'drill data db');
    // Nothing left at the recovery host.
    assert.equal(host.views.size, 0);
    assert.equal(host.machines.size, 0);

    const plan = (
      await t.call<{ rtoEstimate: { measured: { drillId: string; seconds: number } | null } }>(
        'GET',
        '/plans/shop',
      )
    ).body;
    assert.deepEqual(plan.rtoEstimate.measured?.drillId, run.id);
    assert.equal(plan.rtoEstimate.measured?.seconds, run.rtoSeconds);
    const proof = (await t.call<{ lastProven: { rtoSeconds: number } | null }>('GET', '/plans/shop/proof'))
      .body;
    assert.equal(proof.lastProven?.rtoSeconds, run.rtoSeconds);
    const report = await t.call<string>('GET', `/drills/${run.id}/report?format=markdown`);
    assert.match(report.body, /## The plan's order and actions/);
  });

  it('fails at a failing script action, names it, starts no later group, raises an alert and cleans up', async () => {
    const created = await t.call('POST', '/plans', {
      name: 'broken',
      groups: [
        { name: 'data', machines: ['db'], after: [{ kind: 'script', name: 'dns', script: 'fail-now' }] },
        { name: 'front', machines: ['web'] },
      ],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const started = await operator<{ drill: DrillRun }>('POST', '/plans/broken/drills', {
      checks: { filesystems: false, script: null },
    });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const run = await ended(started.body.drill.id);
    assert.equal(run.state, 'failed');
    assert.match(run.reason!, /Script action 'dns' \(group 'data'\) failed with exit code 3/);
    assert.equal(run.rtoSeconds, null);
    const order = run.checks.find((c) => c.name === 'plan order and actions')!;
    assert.equal(order.result, 'failed');
    assert.match(order.summary, /stopped at Group 1 'data', after: script 'dns'/);
    const web = run.machines.find((m) => m.machineName === 'web')!;
    assert.deepEqual(web.checks, [], 'the group after the failed action never booted');
    assert.ok(web.cleanedUp);
    assert.equal(host.views.size, 0);
    assert.equal(host.machines.size, 0);
    const alerts = await ctx.store.alerts.list({ open: true });
    assert.ok(
      alerts.some((a) => a.key === drillFailedAlertKey(run.target)),
      'a failed plan drill raises its alert',
    );
  });

  it('refuses a plan whose machines cannot be drilled now, naming each, and starts nothing', async () => {
    const db = t.machines.db!;
    assert.ok(await ctx.store.machines.transition(db.id, 'protected', 'unprotected', null, db.createdAt));
    try {
      const refused = await operator<{ error: { message: string } }>('POST', '/plans/shop/drills', {});
      assert.equal(refused.status, 409, JSON.stringify(refused.body));
      assert.match(
        refused.body.error.message,
        /Plan 'shop' cannot be drilled now: machine 'db' is unprotected: drills run on protected machines.*Nothing was started/,
      );
    } finally {
      assert.ok(await ctx.store.machines.transition(db.id, 'unprotected', 'protected', null, db.createdAt));
    }
  });
});
