import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ReplicationStatus } from '../host/host-services.ts';
import { replicationHealth, replicationSnapshot } from './replication-monitor.ts';

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
