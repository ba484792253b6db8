import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createGuestMachine, DEMO_MACHINE } from '../../app/demo-machine.ts';
import { type Embedded, startEmbedded } from '../../app/start-embedded.ts';
import { ApiClient } from '../../client/api-client.ts';
import type { Job, JobStep, Machine, ScriptRunRecord } from '../../domain/model.ts';
import { embeddedApi } from '../../testing/embedded-api.ts';
import { consoleOf as guestConsole, records } from '../../testing/guest-console.ts';
import { until as waitUntil } from '../../testing/until.ts';
import { startMachine } from '../machine-power.ts';
import type { PlanMachineRecord } from './plan-job.ts';

/**
 * A recovery plan driving the real machine jobs of three real Linux guests
 * under QEMU, each writing numbered, fsynced records to its ext4 disk:
 * `haven up`'s demo machine in group 1 with a manual action after it, and
 * two more guests in group 2 with a script action before them. The plan
 * fails over (one recovery point choice for all), waits at the manual
 * action until resumed, starts group 2 only after group 1's machine is up
 * (asserted from job timestamps), commits, reprotects, fails back with
 * "synchronise before failover" and completes that failover — the actions
 * running again, in the failback direction — and commits: every guest
 * recovers its records at the primary site.
 */
let dir: string;
let up: Embedded;
const scriptUser = `haven-e2e-${process.pid}`;
const guests: Machine[] = [];
const api = embeddedApi(() => up);
const until = <T>(what: string, probe: () => Promise<T | undefined | false>) =>
  waitUntil(what, probe, { timeoutMs: 180_000, intervalMs: 250 });
const GUEST_DISK_BYTES = 64 << 20;

const jobAt = (id: string, states: string[]) =>
  until(`job ${id} to be ${states.join('/')}`, async () => {
    const { body } = await api<Job>('GET', `/jobs/${id}`);
    return states.includes(body.state) || ['failed', 'cancelled'].includes(body.state) ? body : undefined;
  });

const consoleOf = (hostId: string, vmName: string) => guestConsole(up.vault.context, hostId, vmName);

const recoveredOn = (hostId: string, vmName: string) =>
  until(`${vmName} to recover its records on ${hostId}`, async () => {
    const r = records(await consoleOf(hostId, vmName));
    return r.recovered !== null ? r : undefined;
  });

/** A guest like `haven up`'s demo machine, smaller: running on the primary host on the disk service. */
async function createGuest(name: string, primaryHostId: string): Promise<Machine> {
  const client = new ApiClient({ url: up.vault.url, token: up.adminToken });
  const machine = await createGuestMachine(client, {
    name,
    hostId: primaryHostId,
    disk: join(dir, 'images', `${name}.img`),
    sizeBytes: GUEST_DISK_BYTES,
  });
  await startMachine(up.vault.context, machine);
  return machine;
}

async function machinesNow(): Promise<Machine[]> {
  return Promise.all(guests.map(async (m) => (await api<Machine>('GET', `/machines/${m.id}`)).body));
}

/** Runs a plan operation to its end, resuming it at each manual action; returns the job and how often it waited. */
async function runPlan(
  operation: string,
  body: unknown,
  atManualAction: (job: Job) => Promise<void> = async () => {},
): Promise<{ job: Job; waits: number }> {
  const started = await api<Job>('POST', `/plans/app/${operation}`, body);
  assert.equal(started.status, 202, `${operation}: ${JSON.stringify(started.body)}`);
  let waits = 0;
  for (;;) {
    const job = await jobAt(started.body.id, ['waiting', 'succeeded']);
    if (job.state === 'waiting') {
      waits++;
      await atManualAction(job);
      assert.equal((await api<Job>('GET', `/jobs/${job.id}`)).body.state, 'waiting', 'still waiting');
      assert.equal((await api('POST', `/jobs/${job.id}/resume`)).status, 202);
      await until('the resumed job to move on', async () => {
        const { body: j } = await api<Job>('GET', `/jobs/${job.id}`);
        return j.state !== 'waiting';
      });
      continue;
    }
    assert.equal(job.state, 'succeeded', `${operation}: ${JSON.stringify(job.error)}`);
    return { job, waits };
  }
}

/** Each machine's own job in the plan job, by machine name. */
async function machineJobs(plan: Job): Promise<Map<string, Job>> {
  const recorded = plan.output.machines as Record<string, PlanMachineRecord>;
  const jobs = new Map<string, Job>();
  for (const record of Object.values(recorded)) {
    jobs.set(record.name, (await api<Job>('GET', `/jobs/${record.jobId}`)).body);
  }
  return jobs;
}

/** Group 2's machine jobs start only after group 1's job and its after actions ended. */
function assertGroupOrder(plan: Job, jobs: Map<string, Job>, operation: string): void {
  const step = (name: string): JobStep => plan.steps.find((s) => s.name === name)!;
  const [m1, m2, m3] = guests.map((m) => jobs.get(m.name)!);
  for (const job of [m1!, m2!, m3!]) assert.equal(job.kind, operation);
  const manual = step('g1.after.1');
  const script = step('g2.before.1');
  assert.ok(m1!.finishedAt! <= manual.startedAt!, `${m1!.finishedAt} ≤ manual ${manual.startedAt}`);
  assert.ok(manual.finishedAt! <= script.startedAt!);
  for (const job of [m2!, m3!]) {
    assert.ok(script.finishedAt! <= job.startedAt!, `script ${script.finishedAt} ≤ ${job.startedAt}`);
  }
}

const elapsed = (job: Job) => (Date.parse(job.finishedAt!) - Date.parse(job.startedAt!)) / 1000;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-plan-e2e-'));
  up = await startEmbedded({ dataDir: dir, port: 0, senderPollMs: 25, monitorIntervalMs: 500, scriptUser });
  const script = join(up.vault.context.scripts.registry.dir, 'repoint');
  await writeFile(
    script,
    '#!/bin/sh\necho "$HAVEN_GROUP $HAVEN_OPERATION $HAVEN_MACHINES $HAVEN_DIRECTION"\n',
  );
  await chmod(script, 0o755);
  const demo = (await api<{ machines: Machine[] }>('GET', '/machines')).body.machines.find(
    (m) => m.name === DEMO_MACHINE,
  );
  assert.ok(demo, 'haven up offers the demo machine');
  guests.push(
    demo,
    ...(await Promise.all(['web-01', 'web-02'].map((n) => createGuest(n, demo.primaryHostId)))),
  );
});

after(async () => {
  await up?.stop();
  await rm(dir, { recursive: true, force: true });
  await new Promise<void>((resolve) => execFile('userdel', [scriptUser], () => resolve()));
});

describe('recovery plan of three real guests in two groups', () => {
  it('protects the three guests', async () => {
    await Promise.all(
      guests.map((m) =>
        until(
          `${m.name} to write records`,
          async () => records(await consoleOf(m.primaryHostId, m.name)).durable >= 2,
        ),
      ),
    );
    const enabled = await Promise.all(
      guests.map((m) =>
        api<Job>('POST', `/machines/${m.id}/enable-replication`, {
          recoveryHostId: 'recovery',
          policyId: 'default',
        }),
      ),
    );
    for (const e of enabled) {
      assert.equal(e.status, 202, JSON.stringify(e.body));
      assert.equal((await jobAt(e.body.id, ['succeeded'])).state, 'succeeded');
    }
    assert.deepEqual(
      (await machinesNow()).map((m) => m.state),
      ['protected', 'protected', 'protected'],
    );
  });

  /** What the plan job's script printed (the scripts run unprivileged: they cannot write the test's files). */
  const scriptOutput = async (job: Job) => {
    const { runs } = (await api<{ runs: ScriptRunRecord[] }>('GET', `/script-runs?jobId=${job.id}`)).body;
    return runs.map((r) => r.output).join('');
  };

  it('fails over group by group, waiting at the manual action until resumed', async () => {
    const created = await api('POST', '/plans', {
      name: 'app',
      groups: [
        {
          name: 'database',
          machines: [DEMO_MACHINE],
          after: [
            {
              kind: 'manual',
              name: 'check db',
              text: 'Check the database answers before the web tier starts',
            },
          ],
        },
        {
          name: 'web',
          machines: ['web-01', 'web-02'],
          before: [
            {
              kind: 'script',
              name: 'repoint',
              script: 'repoint',
              timeoutSeconds: 10,
            },
          ],
        },
      ],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));

    const t0 = Date.now();
    const { job, waits } = await runPlan(
      'failover',
      { recoveryPoint: { option: 'latest-processed' }, shutdownSource: false },
      async (waiting) => {
        assert.match(
          waiting.steps.find((s) => s.state === 'running')!.message!,
          /Check the database answers/,
        );
        const [db, web1, web2] = await machinesNow();
        assert.equal(db!.state, 'failed-over');
        assert.deepEqual([web1!.state, web2!.state], ['protected', 'protected'], 'group 2 waits');
        // The operator's check, done by the test: the database guest is up at the recovery site.
        await recoveredOn(db!.runtime.failover!.hostId, db!.runtime.failover!.vmName);
      },
    );
    assert.equal(waits, 1);
    const jobs = await machineJobs(job);
    assertGroupOrder(job, jobs, 'failover');
    const failedOver = await machinesNow();
    assert.deepEqual(
      failedOver.map((m) => m.state),
      ['failed-over', 'failed-over', 'failed-over'],
    );
    // One recovery point choice for all: each guest resumes from its own latest processed point.
    const recovered = await Promise.all(
      failedOver.map((m) => recoveredOn(m.runtime.failover!.hostId, m.runtime.failover!.vmName)),
    );
    const rto = (Date.now() - t0) / 1000;
    for (const r of recovered) assert.ok(r.recovered! >= 1, JSON.stringify(recovered));
    assert.equal(await scriptOutput(job), 'web failover web-01 web-02 primary-to-recovery\n');
    process.stdout.write(
      `# plan failover: machine jobs ${[...jobs].map(([n, j]) => `${n} ${elapsed(j).toFixed(1)} s`).join(', ')}; ` +
        `call → all records recovered ${rto.toFixed(1)} s (incl. the manual check)\n`,
    );
    const shown = await api<{ rtoEstimateSeconds: number }>('GET', '/plans/app');
    process.stdout.write(`# plan RTO estimate: ${shown.body.rtoEstimateSeconds} s\n`);
    assert.ok(shown.body.rtoEstimateSeconds >= Math.max(...[...jobs.values()].map(elapsed)));
  });

  it('commits and reprotects through the plan', async () => {
    const commit = await runPlan('commit', {});
    assert.deepEqual(
      commit.job.steps.map((s) => s.name),
      guests.map((m, i) => `g${i === 0 ? 1 : 2}.machine.${m.id}`),
      'no actions around commit',
    );
    assert.deepEqual(
      (await machinesNow()).map((m) => m.state),
      ['failover-committed', 'failover-committed', 'failover-committed'],
    );
    const { job } = await runPlan('reprotect', {});
    const jobs = await machineJobs(job);
    for (const [name, j] of jobs) {
      const sent = j.output.reprotectSent as { sentBytes: number; diskBytes: number };
      assert.ok(sent.sentBytes < sent.diskBytes / 4, `${name}: reprotect sent ${sent.sentBytes} bytes`);
    }
    assert.deepEqual(
      (await machinesNow()).map((m) => m.state),
      ['reverse-protected', 'reverse-protected', 'reverse-protected'],
    );
  });

  it('fails back (synchronise before failover), completes the failover group by group and commits: no durable record lost', async () => {
    const failback = await runPlan('failback', { dataSync: 'before-failover' });
    assert.equal(failback.waits, 0, 'a synchronising failback starts no machine: its actions wait');
    const ready = await machinesNow();
    assert.deepEqual(
      ready.map((m) => m.state),
      ['failback-ready', 'failback-ready', 'failback-ready'],
    );

    const { job, waits } = await runPlan('complete-failover', {}, async () => {
      const [db, web1, web2] = await machinesNow();
      assert.equal(db!.state, 'failed-back');
      assert.deepEqual([web1!.state, web2!.state], ['failback-ready', 'failback-ready'], 'group 2 waits');
    });
    assert.equal(waits, 1);
    assertGroupOrder(job, await machineJobs(job), 'complete-failover');
    assert.equal(await scriptOutput(job), 'web complete-failover web-01 web-02 recovery-to-primary\n');

    const failedBack = await machinesNow();
    for (const [i, m] of failedBack.entries()) {
      assert.equal(m.state, 'failed-back');
      assert.equal(m.activeHostId, m.primaryHostId);
      // The recovery copy is shut down: its last durable record is final and must be on the primary.
      const copy = ready[i]!.runtime.failover!;
      const lastAtRecovery = records(await consoleOf(copy.hostId, copy.vmName)).durable;
      const { recovered } = await recoveredOn(m.primaryHostId, m.name);
      process.stdout.write(
        `# ${m.name}: recovered ${recovered} ok on the primary (last durable at recovery ${lastAtRecovery})\n`,
      );
      assert.ok(
        recovered! >= lastAtRecovery && lastAtRecovery >= 1,
        `${m.name}: ${recovered} < ${lastAtRecovery}`,
      );
    }

    await runPlan('commit', {});
    assert.deepEqual(
      (await machinesNow()).map((m) => m.state),
      ['failback-committed', 'failback-committed', 'failback-committed'],
    );
    const forward = await runPlan('reprotect', {});
    assert.equal(forward.job.state, 'succeeded');
    assert.deepEqual(
      (await machinesNow()).map((m) => m.state),
      ['protected', 'protected', 'protected'],
    );
  });
});
