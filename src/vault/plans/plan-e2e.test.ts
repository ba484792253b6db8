import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEMO_MACHINE } from '../../cli/commands/demo-machine.ts';
import { type Embedded, startEmbedded } from '../../cli/commands/up-command.ts';
import type { Job, Machine } from '../../domain/model.ts';
import type { ConsoleLog } from '../../host/host-services.ts';
import { embeddedApi } from '../../testing/embedded-api.ts';
import { until as waitUntil } from '../../testing/until.ts';

/**
 * A recovery plan driving the real machine jobs: `haven up`'s demo machine (a
 * Linux guest under QEMU) in group 1 with a script action before it and a
 * manual action after it; group 2 holds a script only (a second and third
 * guest are not created here: see the report). Test failover waits at the
 * manual action, is resumed through the API, and group 2 starts only after
 * the guest's test failover job succeeded; then the plan cleans up.
 */
let dir: string;
let up: Embedded;
let machine: Machine;
const api = embeddedApi(() => up);
const until = <T>(what: string, probe: () => Promise<T | undefined | false>) =>
  waitUntil(what, probe, { timeoutMs: 180_000 });

const jobAt = (id: string, states: string[]) =>
  until(`job ${id} to be ${states.join('/')}`, async () => {
    const { body } = await api<Job>('GET', `/jobs/${id}`);
    return states.includes(body.state) || ['failed', 'cancelled'].includes(body.state) ? body : undefined;
  });

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-plan-e2e-'));
  up = await startEmbedded({ dataDir: dir, port: 0, senderPollMs: 25, monitorIntervalMs: 500 });
  machine = (await api<{ machines: Machine[] }>('GET', '/machines')).body.machines.find(
    (m) => m.name === DEMO_MACHINE,
  )!;
  assert.ok(machine, 'haven up offers the demo machine');
});

after(async () => {
  await up?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('recovery plan with a real guest', () => {
  it('runs test failover in group order, waits at the manual action, resumes, cleans up', async () => {
    const enabled = await api<Job>('POST', `/machines/${machine.id}/enable-replication`, {
      recoveryHostId: 'recovery',
      policyId: 'default',
    });
    assert.equal(enabled.status, 202, JSON.stringify(enabled.body));
    assert.equal((await jobAt(enabled.body.id, ['succeeded'])).state, 'succeeded');

    const marker = join(dir, 'marker');
    const created = await api('POST', '/plans', {
      name: 'demo-app',
      groups: [
        {
          name: 'backend',
          machines: [DEMO_MACHINE],
          before: [
            {
              kind: 'script',
              name: 'note env',
              text: `echo "before $HAVEN_GROUP $HAVEN_OPERATION $HAVEN_MACHINES $HAVEN_DIRECTION" >> ${marker}`,
              timeoutSeconds: 10,
            },
          ],
          after: [
            { kind: 'manual', name: 'smoke test', text: 'Check the demo guest boots on the test network' },
          ],
        },
        {
          name: 'frontend',
          machines: [],
          before: [{ kind: 'script', name: 'second', text: `echo "before $HAVEN_GROUP" >> ${marker}` }],
        },
      ],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));

    const started = await api<Job>('POST', '/plans/demo-app/test-failover', {
      recoveryPoint: { option: 'latest-processed' },
    });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const waiting = await jobAt(started.body.id, ['waiting']);
    assert.equal(waiting.state, 'waiting', JSON.stringify(waiting.error));
    assert.match(waiting.steps[2]!.message!, /Check the demo guest boots/);
    assert.equal(
      (await readFile(marker, 'utf8')).trim(),
      `before backend test-failover ${DEMO_MACHINE} primary-to-recovery`,
    );
    const drilled = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
    assert.equal(drilled.state, 'test-failover-active');
    // The operator's manual check, done by the test: the drill copy (a real QEMU guest) boots.
    const drill = drilled.runtime.test!;
    await until('the drill copy to boot', async () => {
      const log = await up.vault.context.hosts.call<ConsoleLog>(drill.hostId, 'hypervisor.consoleLog', {
        name: drill.vmName,
      });
      return log.lines.some((l) => l.includes('haven-guest booted'));
    });
    assert.equal((await api<Job>('GET', `/jobs/${started.body.id}`)).body.state, 'waiting', 'still waiting');

    assert.equal((await api('POST', `/jobs/${started.body.id}/resume`)).status, 202);
    const done = await jobAt(started.body.id, ['succeeded']);
    assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
    const [script, machineStep, manual, second] = done.steps;
    const machineJobId = (done.output.machines as Record<string, { jobId: string }>)[machine.id]!.jobId;
    const machineJob = (await api<Job>('GET', `/jobs/${machineJobId}`)).body;
    assert.equal(machineJob.kind, 'test-failover');
    // Order from the step timestamps: script, the guest's job, the manual action, then group 2.
    assert.ok(script!.finishedAt! <= machineJob.startedAt!);
    assert.ok(machineJob.finishedAt! <= machineStep!.finishedAt!);
    assert.ok(machineStep!.finishedAt! <= manual!.startedAt!);
    assert.ok(manual!.finishedAt! <= second!.startedAt!);
    assert.match(await readFile(marker, 'utf8'), /\nbefore frontend\n$/);
    const took = (Date.parse(machineJob.finishedAt!) - Date.parse(machineJob.startedAt!)) / 1000;
    process.stdout.write(`# plan test failover: guest job ${took.toFixed(1)} s\n`);

    const shown = await api<{ rtoEstimateSeconds: number }>('GET', '/plans/demo-app');
    assert.ok(shown.body.rtoEstimateSeconds >= took, JSON.stringify(shown.body));
    process.stdout.write(`# plan RTO estimate: ${shown.body.rtoEstimateSeconds} s\n`);

    const cleanup = await api<Job>('POST', '/plans/demo-app/cleanup-test-failover', {
      notes: 'plan drill ok',
    });
    assert.equal(cleanup.status, 202, JSON.stringify(cleanup.body));
    const cleaned = await jobAt(cleanup.body.id, ['succeeded']);
    assert.equal(cleaned.state, 'succeeded', JSON.stringify(cleaned.error));
    assert.deepEqual(
      cleaned.steps.map((s) => s.name),
      [`g1.machine.${machine.id}`],
      'actions run around operations that start machines only',
    );
    assert.equal((await api<Machine>('GET', `/machines/${machine.id}`)).body.state, 'protected');
  });
});
