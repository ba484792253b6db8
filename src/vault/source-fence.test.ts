import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../clock/index.ts';
import type { Machine, MachineState, SourceFence } from '../domain/model.ts';
import { HavenError } from '../errors/index.ts';
import { openStore, type Store } from '../store/index.ts';
import { sampleMachine } from '../testing/sample-machine.ts';
import { fenceAlertKey, raiseFenceAlert, SourceFencer, sourceLeftOn } from './source-fence.ts';
import type { VaultContext } from './vault-context.ts';

/**
 * The vault's side of a source that comes back: which machines it fences,
 * what it records when the hypervisor confirms the source off and when it
 * does not. The host is a double here; failover-e2e.test.ts cuts and
 * restores a real host under a real QEMU guest.
 */
const unverified: Extract<SourceFence, { verified: false }> = {
  verified: false,
  hostId: 'h-primary',
  vmName: 'web-1',
  reason: 'the source host is unreachable',
  jobId: 'job-1',
  since: '2026-12-01T00:00:00.000Z',
  attempts: 0,
  lastAttemptAt: null,
};

function machine(patch: Partial<Machine> = {}): Machine {
  return sampleMachine({ sourceFence: unverified, ...patch });
}

describe('which source the vault stops when its host is back', () => {
  it('one a failover left unverified on that host, while the machine runs or is started elsewhere', () => {
    for (const state of [
      'failing-over',
      'failed-over',
      'changing-recovery-point',
      'failover-committed',
    ] as const)
      assert.deepEqual(sourceLeftOn(machine({ state }), 'h-primary'), unverified, state);
    assert.ok(sourceLeftOn(machine({ state: 'committing' }), 'h-primary'), 'committing the failover');
    assert.equal(sourceLeftOn(machine(), 'h-recovery'), null, 'another host');
    assert.equal(sourceLeftOn(machine({ sourceFence: null }), 'h-primary'), null, 'no failover');
    assert.equal(
      sourceLeftOn(
        machine({
          sourceFence: {
            verified: true,
            hostId: 'h-primary',
            vmName: 'web-1',
            state: 'shut-off',
            jobId: 'job-1',
            fencedAt: 't',
            by: 'failover',
          },
        }),
        'h-primary',
      ),
      null,
      'verified already',
    );
  });

  it('not the machine itself: a failover that failed before its copy started left it running there', () => {
    const back = machine({ state: 'protected', activeHostId: 'h-primary' });
    assert.equal(sourceLeftOn(back, 'h-primary'), null);
    const copyStarted = {
      hostId: 'h-recovery',
      viewId: 'v',
      vmName: 'web-1',
      pointId: 'p',
      pointTime: 't',
      disks: [],
      startedAt: 't',
    };
    assert.ok(sourceLeftOn({ ...back, runtime: { test: null, failover: copyStarted } }, 'h-primary'));
  });

  it('not once the machine is on its way back (reprotect checked the original off)', () => {
    const onTheWayBack: MachineState[] = [
      'reprotecting',
      'reverse-protected',
      'failing-back',
      'failed-back',
      'failback-committed',
    ];
    for (const state of onTheWayBack) {
      assert.equal(sourceLeftOn(machine({ state, activeHostId: 'h-primary' }), 'h-primary'), null, state);
    }
    assert.equal(
      sourceLeftOn(machine({ state: 'committing', activeHostId: 'h-primary' }), 'h-primary'),
      null,
    );
  });
});

describe('fencing a returned source', () => {
  let dir: string;
  let store: Store;
  const clock = new ManualClock('2026-12-01T00:10:00.000Z');
  const calls: string[] = [];
  let answer: (method: string) => unknown;
  const vault = () =>
    ({
      store,
      clock,
      hosts: {
        isConnected: () => true,
        call: async (_hostId: string, method: string) => {
          calls.push(method);
          return answer(method);
        },
      },
    }) as unknown as VaultContext;
  const lines: string[] = [];
  const fencer = new SourceFencer(vault, { log: (line) => lines.push(line) });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'haven-source-fence-'));
    store = await openStore({ dataDir: dir });
    await store.machines.create(machine());
    await store.jobs.create({
      id: 'job-1',
      kind: 'failover',
      targetType: 'machine',
      targetId: 'm-1',
      state: 'running',
      progress: 50,
      input: {},
      output: { fence: 'not verified: the source host is unreachable' },
      createdBy: 'admin',
      createdAt: '2026-12-01T00:00:00.000Z',
      startedAt: '2026-12-01T00:00:00.000Z',
      finishedAt: null,
      error: null,
      cancelRequested: false,
      steps: [],
    });
    await raiseFenceAlert(
      vault(),
      machine(),
      'source machine not verified fenced',
      clock.now().toISOString(),
    );
  });
  after(async () => {
    await fencer.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const openAlert = async () =>
    (await store.alerts.list({ open: true })).find((a) => a.key === fenceAlertKey('m-1'));

  it('a fence that fails keeps the alert open and says why on the machine', async () => {
    answer = (method) => {
      if (method === 'hypervisor.fence') throw new HavenError('internal', 'QEMU process 42 survives SIGKILL');
      throw new Error(`unexpected ${method}`);
    };
    await fencer.fenceOn('h-primary');
    const fence = (await store.machines.get('m-1'))?.sourceFence;
    assert.ok(fence && !fence.verified);
    assert.equal(fence.attempts, 1);
    assert.match(
      fence.reason,
      /host 'h-primary' is back but fencing failed: QEMU process 42 survives SIGKILL/,
    );
    assert.ok(await openAlert(), 'the alert stays open');
    assert.deepEqual(calls, ['hypervisor.fence']);
    assert.match(lines.at(-1)!, /still not verified stopped/);
  });

  it('a verified fence stops its sender, records it, clears the alert and tells the running job', async () => {
    calls.length = 0;
    answer = () => ({ name: 'web-1', state: 'shut-off' });
    await fencer.fenceOn('h-primary');
    assert.deepEqual(calls, ['hypervisor.fence', 'hypervisor.status', 'replication.stop']);
    const fence = (await store.machines.get('m-1'))?.sourceFence;
    assert.deepEqual(fence, {
      verified: true,
      hostId: 'h-primary',
      vmName: 'web-1',
      state: 'shut-off',
      jobId: 'job-1',
      fencedAt: '2026-12-01T00:10:00.000Z',
      by: 'host-returned',
    });
    assert.equal(await openAlert(), undefined);
    const job = await store.jobs.get('job-1');
    assert.match(
      String(job?.output.fenceOnReturn),
      /fenced when host 'h-primary' came back \(verified: shut-off\)/,
    );
    assert.equal(
      job?.output.fence,
      'not verified: the source host is unreachable',
      'what the job said stays',
    );
    calls.length = 0;
    await fencer.fenceOn('h-primary');
    assert.deepEqual(calls, [], 'nothing left to fence');
  });

  it('a source the hypervisor still reports running is not called fenced', async () => {
    await store.machines.recordSourceFence('m-1', unverified);
    answer = (method) => (method === 'hypervisor.status' ? { name: 'web-1', state: 'running' } : {});
    await fencer.fenceOn('h-primary');
    const fence = (await store.machines.get('m-1'))?.sourceFence;
    assert.ok(fence && !fence.verified);
    assert.match(fence.reason, /still reports it running after fencing/);
    assert.ok(await openAlert(), 'the alert is raised again');
  });

  it('a physical server is fenced at its host (legs and agent refused) and never called verified: nothing can see its power', async () => {
    await store.machines.update({
      ...(await store.machines.get('m-1'))!,
      server: { writeBehind: null, nbdTimeoutSeconds: 5, enrolledAt: '2026-12-01T00:00:00.000Z' },
    });
    await store.machines.recordSourceFence('m-1', unverified);
    calls.length = 0;
    // The primary host's hypervisor has never heard of the server: "absent" must not count.
    answer = (method) => (method === 'hypervisor.status' ? { name: 'web-1', state: 'absent' } : undefined);
    await fencer.fenceOn('h-primary');
    assert.deepEqual(calls, ['servers.fence']);
    const fence = (await store.machines.get('m-1'))?.sourceFence;
    assert.ok(fence && !fence.verified, 'not verified');
    assert.match(fence.reason, /has no BMC: host 'h-primary' refuses its NBD legs and its agent/);
    assert.ok(await openAlert(), 'the alert stays open until an operator made sure it is off');
  });
});
