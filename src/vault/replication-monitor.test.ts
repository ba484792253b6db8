import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { systemClock } from '../clock/index.ts';
import type { ServerLinkSnapshot } from '../domain/model.ts';
import type { ReplicationStatus } from '../host/host-services.ts';
import { openStore } from '../store/index.ts';
import { sampleLeg, sampleMachine, sampleServerLink } from '../testing/sample-machine.ts';
import { ReplicationMonitor, replicationHealth, replicationSnapshot } from './replication-monitor.ts';
import type { VaultContext } from './vault-context.ts';

const streaming: ReplicationStatus = {
  machineId: 'vm1',
  brokenDisks: [],
  state: 'streaming',
  progress: 100,
  lagSeconds: 0,
  queuedBytes: 0,
  sentBytes: 10,
  lastError: null,
};
const now = '2026-12-01T00:00:00.000Z';

test('a streaming machine whose disks are all served is healthy', () => {
  const snapshot = replicationSnapshot(streaming, 0, now);
  assert.equal(snapshot.state, 'streaming');
  assert.equal(replicationHealth(snapshot, 60), 'healthy');
});

test('a disk its host does not serve makes the machine critical, whatever replication says, and says why', () => {
  const snapshot = replicationSnapshot(
    {
      ...streaming,
      brokenDisks: [
        { diskId: 'disk0', problem: "the write journal of export 'vm1.disk0' accepts no writes: EIO" },
      ],
    },
    0,
    now,
  );
  assert.equal(snapshot.state, 'error');
  assert.equal(
    snapshot.lastError,
    "disk path broken: disk 'disk0': the write journal of export 'vm1.disk0' accepts no writes: EIO",
  );
  assert.equal(replicationHealth(snapshot, null), 'critical');
});

test('a physical server is healthy only while every leg is in sync; never green otherwise, and says why', () => {
  const inSync = replicationSnapshot({ ...streaming, server: sampleServerLink() }, 0, now, 'server');
  assert.equal(inSync.server?.state, 'in-sync');
  assert.equal(replicationHealth(inSync, 60), 'healthy');

  const cases: Array<[ServerLinkSnapshot, 'warning' | 'critical', RegExp]> = [
    [sampleServerLink({ state: 'awaiting-enrolment', legs: [] }), 'warning', /awaiting the enrolment/],
    [
      sampleServerLink({
        state: 'syncing',
        legs: [sampleLeg({ md: 'resyncing', syncedBytes: (1 << 30) / 4 })],
      }),
      'warning',
      /disk0 md resync 25%/,
    ],
    [
      sampleServerLink({
        state: 'degraded',
        legs: [sampleLeg({ connected: false })],
        problem: 'leg disk0 disconnected 40 s ago',
      }),
      'critical',
      /leg disk0 disconnected 40 s ago/,
    ],
    [sampleServerLink({ state: 'agent-silent' }), 'critical', /agent is silent/],
  ];
  for (const [server, health, problem] of cases) {
    // The sender streams all along: its word alone would be a false green.
    const snapshot = replicationSnapshot({ ...streaming, server }, 0, now, 'server');
    assert.equal(snapshot.state, 'streaming');
    assert.equal(replicationHealth(snapshot, 60), health, server.state);
    assert.match(snapshot.lastError ?? '', problem, server.state);
  }

  const unsaid = replicationSnapshot(streaming, 0, now, 'server');
  assert.equal(
    replicationHealth(unsaid, 60),
    'critical',
    'a host that reports no server link vouches for nothing',
  );
  assert.match(unsaid.lastError ?? '', /reports no server link/);
});

test('a status asked for before the machine moved does not land after it: no green from the old direction', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'haven-monitor-'));
  const store = await openStore({ dataDir: dir });
  try {
    const machine = sampleMachine({
      id: 'vm1',
      name: 'web-01',
      primaryHostId: 'primary',
      recoveryHostId: 'recovery',
      activeHostId: 'recovery',
      state: 'reverse-protected',
    });
    await store.machines.create(machine);
    let asked = 0;
    const vault = {
      store,
      clock: systemClock,
      hosts: {
        isConnected: () => true,
        call: async (_host: string, method: string) => {
          assert.equal(method, 'replication.status');
          asked++;
          if (asked === 1) {
            // While the recovery host answers, the machine fails back: the operation forgets the old status.
            await store.machines.update({ ...machine, activeHostId: 'primary' });
            await store.machines.recordReplication(machine.id, null, 'unknown');
          }
          return streaming;
        },
      },
    } as unknown as VaultContext;
    const monitor = new ReplicationMonitor(vault);
    await monitor.pollOnce();
    const after = await store.machines.get(machine.id);
    assert.equal(asked, 1);
    assert.equal(after?.health, 'unknown', 'the old direction streamed; the new one is not known yet');
    assert.equal(after?.replication, null);

    await monitor.pollOnce();
    assert.equal(
      (await store.machines.get(machine.id))?.health,
      'healthy',
      'asked again in the new direction',
    );
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
