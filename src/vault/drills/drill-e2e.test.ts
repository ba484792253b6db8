import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { DEMO_MACHINE } from '../../app/demo-machine.ts';
import { type Embedded, startEmbedded } from '../../app/start-embedded.ts';
import type { DrillChecks, DrillPointChoice, DrillRun } from '../../domain/drill.ts';
import type { Alert, Machine, RecoveryPlan, RecoveryPoint } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type {
  FilesystemCheckReport,
  MachineStatus,
  ReplicaStore,
  ReplicationStatus,
} from '../../host/host-services.ts';
import { damageInodeTable } from '../../testing/damage-inode-table.ts';
import { embeddedApi, runOperation } from '../../testing/embedded-api.ts';
import { consoleOf, records } from '../../testing/guest-console.ts';
import { until as waitUntil } from '../../testing/until.ts';
import { requestMachineDrill, requestPlanDrill } from './request-drill.ts';

/**
 * Drills of the demo machine of `haven up` (a real Linux guest under QEMU
 * writing checksummed records to ext4), run by the vault with nobody
 * attending: the point boots on the isolated test network from an overlay,
 * its checks are recorded with evidence, and the drill machine and overlay
 * are gone afterwards while production keeps replicating.
 */
const run = promisify(execFile);
let dir: string;
let up: Embedded;
/** The recovery copy's static address: the application check reaches it on the test network. */
const address = '10.213.79.2';
let machine: Machine;
const api = embeddedApi(() => up);
const until = <T>(what: string, probe: () => Promise<T | undefined | false>) =>
  waitUntil(what, probe, { timeoutMs: 180_000 });

async function drillEnded(id: string): Promise<DrillRun> {
  return until(`drill ${id} to end`, async () => {
    const run = await up.vault.context.store.drillRuns.get(id);
    return run && run.endedAt !== null ? run : undefined;
  });
}

async function registerScript(name: string, text: string): Promise<void> {
  const file = join(dir, 'scripts', name);
  await writeFile(file, text);
  await chmod(file, 0o700);
}

async function probeNamespaces(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout.split('\n').filter((l) => l.startsWith('haven-probe-'));
}

/** Drills the demo machine now with these checks and waits for the drill to end. */
async function drillNow(
  checks: DrillChecks,
  point: DrillPointChoice = 'latest-crash-consistent',
): Promise<DrillRun> {
  const run = await requestMachineDrill(up.vault.context, machine, {
    point,
    testNetwork: null,
    checks,
    timeLimitSeconds: 600,
    createdBy: 'test',
  });
  return drillEnded(run.id);
}

/** The drill's machine and overlay no longer exist at the recovery host. */
async function assertGone(run: DrillRun): Promise<void> {
  for (const m of run.machines) {
    assert.ok(m.copy, 'the drill recorded where it ran');
    assert.equal(m.cleanedUp, true);
    const status = await up.vault.context.hosts.call<MachineStatus>(m.copy.hostId, 'hypervisor.status', {
      name: m.copy.vmName,
    });
    assert.equal(status.state, 'absent');
    await assert.rejects(
      up.vault.context.hosts.call(m.copy.hostId, 'replica.viewInfo', { viewId: m.copy.viewId }),
      (e: unknown) => e instanceof HavenError && e.code === 'not_found',
    );
  }
  assert.deepEqual(await probeNamespaces(), []);
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-drills-'));
  up = await startEmbedded({ dataDir: dir, port: 0, senderPollMs: 25, monitorIntervalMs: 500 });
  machine = (await api<{ machines: Machine[] }>('GET', '/machines')).body.machines.find(
    (m) => m.name === DEMO_MACHINE,
  )!;
  await until('the demo guest to write records', async () =>
    records(await consoleOf(up.vault.context, machine.primaryHostId, DEMO_MACHINE)).durable >= 2
      ? true
      : undefined,
  );
  await runOperation(
    api,
    machine.id,
    'enable-replication',
    { recoveryHostId: 'recovery', policyId: 'default' },
    180_000,
  );
  // A static address for its recovery copy: the drill's application check reaches it on the test network.
  const protectedMachine = (await up.vault.context.store.machines.get(machine.id))!;
  await up.vault.context.store.machines.update({
    ...protectedMachine,
    recoverySettings: {
      ...protectedMachine.recoverySettings,
      nics: [
        {
          network: 'prod',
          recoveryNetwork: null,
          mac: null,
          ip: { mode: 'static', address, prefixLength: 24, gateway: null, dns: [] },
        },
      ],
    },
  });
  machine = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
  await registerScript(
    'check-records',
    [
      '#!/bin/sh',
      'echo "checking $HAVEN_MACHINE ($HAVEN_OPERATION of $HAVEN_POINT_TIME) at $HAVEN_DRILL_ADDRESS as $(id -u)"',
      'state=$(curl -fsS --max-time 5 "http://$HAVEN_DRILL_ADDRESS/records") || exit 2',
      'echo "$state"',
      'case "$state" in "recovered "*" ok"|"durable "*) exit 0 ;; *) exit 1 ;; esac',
    ].join('\n'),
  );
  await until('a crash-consistent point', async () =>
    (
      await api<{ recoveryPoints: RecoveryPoint[] }>('GET', `/machines/${machine.id}/recovery-points`)
    ).body.recoveryPoints.some((p) => p.processed && p.type === 'crash-consistent'),
  );
});

after(async () => {
  await up?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('drills of a real guest', { timeout: 600_000 }, () => {
  it('a schedule runs a drill by itself, and moves on to its next run', async () => {
    const now = Date.now();
    const store = up.vault.context.store;
    await store.drillSchedules.create({
      id: 'sched-hourly',
      name: 'demo hourly',
      target: { kind: 'machine', machineId: machine.id },
      cadence: { kind: 'every', hours: 1 },
      point: 'latest-crash-consistent',
      testNetwork: null,
      maxConcurrentPerHost: 1,
      timeLimitSeconds: 600,
      checks: {
        filesystems: true,
        script: { name: 'check-records', timeoutSeconds: 30 },
        boot: { consolePattern: 'recovered \\d+ ok', timeoutSeconds: 120 },
      },
      onConflict: 'wait',
      enabled: true,
      nextRunAt: new Date(now + 1000).toISOString(),
      lastRunAt: null,
      createdBy: 'test',
      createdAt: new Date(now).toISOString(),
      updatedAt: new Date(now).toISOString(),
    });
    const run = await until(
      'the schedule to start a drill',
      async () => (await store.drillRuns.list({ scheduleId: 'sched-hourly' }))[0],
    );
    const ended = await drillEnded(run.id);
    assert.equal(ended.state, 'passed', `${ended.reason}`);
    assert.deepEqual(
      ended.machines[0]!.checks.map((c) => [c.kind, c.result]),
      [
        ['filesystems', 'passed'],
        ['boot', 'passed'],
        ['application', 'passed'],
      ],
    );
    const application = ended.machines[0]!.checks.find((c) => c.kind === 'application')!;
    console.log(
      `# scheduled drill of ${DEMO_MACHINE} (filesystem, boot and application checks): RTO ${ended.machines[0]!.rtoSeconds!.toFixed(1)} s, drill ${((Date.parse(ended.endedAt!) - Date.parse(ended.startedAt!)) / 1000).toFixed(1)} s, checks ${ended.machines[0]!.checks.map((c) => `${c.kind} ${(c.durationMs / 1000).toFixed(1)} s`).join(', ')}`,
    );
    assert.equal(application.evidenceIsScriptOutput, true);
    assert.match(
      application.evidence!,
      new RegExp(`^checking ${DEMO_MACHINE} \\(drill of .+\\) at ${address} as [1-9]`, 'm'),
    );
    assert.match(application.evidence!, /^(recovered \d+ ok|durable \d+)$/m);
    await assertGone(ended);
    const schedule = (await store.drillSchedules.get('sched-hourly'))!;
    assert.ok(Date.parse(schedule.nextRunAt!) >= now + 3_500_000, `next run ${schedule.nextRunAt}`);
    assert.ok(schedule.lastRunAt !== null);
  });

  it('a drill boots the latest crash-consistent point, proves it up with evidence and RTO, and leaves nothing behind', async () => {
    const ended = await drillNow({
      filesystems: false,
      script: null,
      boot: { consolePattern: 'recovered \\d+ ok', timeoutSeconds: 120 },
    });
    assert.equal(ended.state, 'passed', `${ended.reason} ${JSON.stringify(ended.machines)}`);
    const [m] = ended.machines;
    assert.equal(m!.point?.type, 'crash-consistent');
    const boot = m!.checks.find((c) => c.kind === 'boot')!;
    assert.equal(boot.result, 'passed');
    assert.match(boot.evidence ?? '', /recovered \d+ ok/);
    assert.ok(m!.rtoSeconds !== null && m!.rtoSeconds > 0 && m!.rtoSeconds < 120, `RTO ${m!.rtoSeconds}`);
    assert.equal(ended.rtoSeconds, m!.rtoSeconds, "a machine drill's RTO is its machine's");
    console.log(
      `# drill of ${DEMO_MACHINE}: RTO ${m!.rtoSeconds!.toFixed(1)} s, drill ${((Date.parse(ended.endedAt!) - Date.parse(ended.startedAt!)) / 1000).toFixed(1)} s`,
    );
    await assertGone(ended);
    assert.equal((await up.vault.context.store.drillRuns.lastProven(machine.id))?.id, ended.id);
    // Production was never touched.
    const status = await up.vault.context.hosts.call<MachineStatus>(
      machine.primaryHostId,
      'hypervisor.status',
      {
        name: DEMO_MACHINE,
      },
    );
    assert.equal(status.state, 'running');
    assert.equal((await api<Machine>('GET', `/machines/${machine.id}`)).body.state, 'protected');
  });

  it('a drill whose machine does not come up in time fails with the console as evidence, raises an alert, and is cleaned up', async () => {
    const ended = await drillNow({
      filesystems: false,
      script: null,
      boot: { consolePattern: 'this line never appears', timeoutSeconds: 5 },
    });
    assert.equal(ended.state, 'failed');
    const boot = ended.machines[0]!.checks.find((c) => c.kind === 'boot')!;
    assert.equal(boot.result, 'failed');
    assert.match(boot.summary, /within 5 s/);
    assert.match(ended.reason ?? '', /boot/);
    await assertGone(ended);
    const alerts = (await api<{ alerts: Alert[] }>('GET', '/alerts')).body.alerts;
    assert.ok(
      alerts.some(
        (a) => a.subjectId === machine.id && /drill .* failed/.test(a.message) && a.clearedAt === null,
      ),
      JSON.stringify(alerts),
    );
    // The last proof is still the earlier drill's.
    assert.notEqual((await up.vault.context.store.drillRuns.lastProven(machine.id))?.id, ended.id);
  });

  it("a drill that fails twice over: its inode table overwritten in the drill's overlay, and a check script that then finds no records; both reported with evidence, an alert, nothing left", async () => {
    const recovery = up.hosts.find((h) => h.agent.identity.hostId === machine.recoveryHostId)!;
    const replica = recovery.agent.services.replica as ReplicaStore;
    const real = replica.checkFilesystems.bind(replica);
    // The damage lands in the drill's own overlay, right before the check reads it; the replica is untouched.
    replica.checkFilesystems = async (params): Promise<FilesystemCheckReport> => {
      const view = await replica.viewInfo({ viewId: params.viewId });
      await damageInodeTable(view.disks[0]!.nbdUri);
      return real(params);
    };
    let ended: DrillRun;
    try {
      ended = await drillNow({
        filesystems: true,
        script: { name: 'check-records', timeoutSeconds: 30 },
        // Any console output: the guest boots (its system is not on the damaged disk), so the script runs.
        boot: { consolePattern: null, timeoutSeconds: 60 },
      });
    } finally {
      replica.checkFilesystems = real;
    }
    assert.equal(ended.state, 'failed');
    const fs = ended.machines[0]!.checks.find((c) => c.kind === 'filesystems')!;
    assert.equal(fs.result, 'failed');
    // The journal lived in the damaged inode table: replaying it stops at what preen may not fix.
    assert.match(fs.summary, /journal could not be replayed|e2fsck -fn/);
    assert.match(fs.evidence ?? '', /UNEXPECTED INCONSISTENCY|Filesystem still has errors/);
    const application = ended.machines[0]!.checks.find((c) => c.kind === 'application')!;
    assert.equal(application.result, 'failed', JSON.stringify(application));
    assert.match(application.evidence ?? '', /checking demo-01/);
    assert.match(ended.reason ?? '', /filesystem disk0/);
    const alerts = (await api<{ alerts: Alert[] }>('GET', '/alerts')).body.alerts;
    // One open alert per machine whose last drill failed (raised by the earlier failed drill already, or by this one).
    assert.ok(
      alerts.some(
        (a) => a.subjectId === machine.id && a.clearedAt === null && /drill .* failed/.test(a.message),
      ),
      JSON.stringify(alerts),
    );
    await assertGone(ended);
  });

  it("a plan drill runs the plan's order by itself: its script action, the machine up, the manual action reported not performed, the plan's RTO measured", async () => {
    await registerScript(
      'announce-drill',
      '#!/bin/sh\n[ "$HAVEN_OPERATION" = drill ] || exit 9\necho "drilling $HAVEN_MACHINES of $HAVEN_PLAN"\n',
    );
    const created = await api<RecoveryPlan>('POST', '/plans', {
      name: 'demo-plan',
      groups: [
        {
          name: 'app',
          machines: [DEMO_MACHINE],
          before: [{ kind: 'script', name: 'announce', script: 'announce-drill', timeoutSeconds: 30 }],
          after: [
            { kind: 'manual', name: 'check the records', text: 'Open the console and read the records' },
          ],
        },
      ],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const run = await requestPlanDrill(up.vault.context, created.body, {
      point: 'latest-crash-consistent',
      testNetwork: null,
      checks: {
        filesystems: true,
        script: null,
        boot: { consolePattern: 'recovered \\d+ ok', timeoutSeconds: 120 },
      },
      timeLimitSeconds: 600,
      createdBy: 'test',
    });
    const ended = await drillEnded(run.id);
    assert.equal(ended.state, 'passed', `${ended.reason} ${JSON.stringify(ended.checks)}`);
    const [m] = ended.machines;
    assert.deepEqual(
      m!.checks.map((c) => [c.kind, c.result]),
      [
        ['filesystems', 'passed'],
        ['boot', 'passed'],
      ],
    );
    assert.equal(ended.rtoSeconds, m!.rtoSeconds);
    assert.ok(ended.rtoSeconds! > 0 && ended.rtoSeconds! < 180, `plan RTO ${ended.rtoSeconds}`);
    const manual = ended.checks.find((c) => c.name.startsWith("manual action 'check the records'"))!;
    assert.equal(manual.result, 'not-checked');
    assert.match(manual.summary, /not performed/);
    assert.equal(manual.evidence, 'Open the console and read the records');
    const order = ended.checks.find((c) => c.kind === 'plan' && c.name === 'plan order and actions')!;
    assert.equal(order.result, 'passed', order.summary);
    assert.match(order.evidence!, /before: script 'announce': succeeded in [\d.]+ s/);
    assert.match(order.evidence!, new RegExp(`${DEMO_MACHINE}: up at [\\d.]+ s`));
    await assertGone(ended);
    const plan = (
      await api<{ rtoEstimate: { measured: { drillId: string; seconds: number } | null } }>(
        'GET',
        '/plans/demo-plan',
      )
    ).body;
    assert.equal(plan.rtoEstimate.measured?.drillId, run.id);
    console.log(
      `# plan drill of 'demo-plan' (1 group, ${DEMO_MACHINE}): plan RTO ${ended.rtoSeconds!.toFixed(1)} s, drill ${((Date.parse(ended.endedAt!) - Date.parse(ended.startedAt!)) / 1000).toFixed(1)} s`,
    );
  });

  it('production keeps replicating during drills: its RPO p99 stays within 5 s of its RPO p99 without drills', async () => {
    /** Samples the primary's replication lag (the RPO it would lose now) every 200 ms while `during` runs. */
    const sampleWhile = async (during: Promise<unknown>): Promise<number[]> => {
      const samples: number[] = [];
      let done = false;
      void during.finally(() => {
        done = true;
      });
      while (!done) {
        const status = await up.vault.context.hosts.call<ReplicationStatus>(
          machine.primaryHostId,
          'replication.status',
          {
            machineId: machine.id,
          },
        );
        assert.notEqual(status.state, 'error', status.lastError ?? '');
        samples.push(status.lagSeconds ?? 0);
        await new Promise((r) => setTimeout(r, 200));
      }
      await during;
      return samples;
    };
    const p99 = (xs: number[]) =>
      [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))]!;
    const quiet = await sampleWhile(new Promise((r) => setTimeout(r, 15_000)));
    const drills = (async () => {
      for (let i = 0; i < 2; i++) {
        const ended = await drillNow(
          {
            filesystems: true,
            script: null,
            boot: { consolePattern: 'recovered \\d+ ok', timeoutSeconds: 120 },
          },
          i === 0 ? 'latest-crash-consistent' : 'random-retained',
        );
        assert.equal(ended.state, 'passed', `${ended.reason}`);
      }
    })();
    const busy = await sampleWhile(drills);
    console.log(
      `# RPO p99 without drills ${p99(quiet).toFixed(2)} s (${quiet.length} samples), during drills ${p99(busy).toFixed(2)} s (${busy.length} samples): +${(p99(busy) - p99(quiet)).toFixed(2)} s`,
    );
    assert.ok(busy.length >= 10, `${busy.length} samples during the drills`);
    assert.ok(p99(busy) <= p99(quiet) + 5, `RPO p99 ${p99(busy)} s during drills, ${p99(quiet)} s without`);
  });
});
