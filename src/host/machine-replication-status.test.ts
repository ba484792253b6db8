import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DiskReplicationStatus, SyncReport } from '../replication/index.ts';
import { newSyncReport } from '../replication/sync-report.ts';
import { machineReplicationStatus, type SendingFrom } from './machine-replication-status.ts';

const disk = (diskKey: string, more: Partial<DiskReplicationStatus> = {}): DiskReplicationStatus => ({
  diskKey,
  state: 'streaming',
  syncProgress: null,
  bytesPending: 0,
  syncDue: null,
  resyncRequired: false,
  throughputBytesPerSec: 0,
  lastAckedSeq: 0,
  lastAckedRecordTimeMs: null,
  wireBytesSent: 0,
  batchesCompressed: 0,
  batchesUncompressed: 0,
  connects: 1,
  lastError: null,
  lastSync: null,
  replicaHashes: null,
  resyncRequests: { senderId: 's', last: 0, done: 0 },
  ...more,
});
const noWrites = () => null;

test('a machine without replicated disks is stopped', () => {
  const status = machineReplicationStatus('vm1', [disk('vm10/d0')], new Map(), noWrites);
  assert.deepEqual(status, {
    machineId: 'vm1',
    state: 'stopped',
    progress: 0,
    lagSeconds: null,
    queuedBytes: 0,
    sentBytes: 0,
    lastError: null,
  });
});

test("the machine's state is its least advanced disk's", () => {
  const of = (...states: DiskReplicationStatus['state'][]) =>
    machineReplicationStatus(
      'vm1',
      states.map((state, i) => disk(`vm1/d${i}`, { state })),
      new Map(),
      noWrites,
    ).state;
  assert.equal(of('streaming', 'paused'), 'paused');
  assert.equal(of('paused', 'resync', 'streaming'), 'resync');
  assert.equal(of('initial-sync', 'error'), 'error');
  // Connecting is not a state of the API: it shows as the sync or stream it leads to.
  assert.equal(of('connecting', 'streaming'), 'streaming');
  assert.equal(
    machineReplicationStatus(
      'vm1',
      [disk('vm1/d0', { state: 'connecting', syncProgress: 0.5 })],
      new Map(),
      noWrites,
    ).state,
    'initial-sync',
  );
});

test('a sender with a copy due is not caught up, even before the copy begins', () => {
  const of = (...disks: Partial<DiskReplicationStatus>[]) =>
    machineReplicationStatus(
      'vm1',
      disks.map((more, i) => disk(`vm1/d${i}`, more)),
      new Map(),
      noWrites,
    ).state;
  // Connecting to copy a new replica (a reprotect to new disks): the wait for "streaming" must not end here.
  assert.equal(of({ state: 'connecting', syncDue: 'initial' }), 'initial-sync');
  assert.equal(of({ state: 'connecting', syncDue: 'resync' }, { state: 'streaming' }), 'resync');
  // Streaming, with a requested hash resync the stream loop has not picked up yet.
  assert.equal(of({ state: 'streaming', syncDue: 'resync' }), 'resync');
  // Nothing due: connecting shows as the stream it leads to.
  assert.equal(of({ state: 'connecting', syncDue: null }), 'streaming');
  // Unless it connects again after a failure: then it is in error until a session resumes.
  assert.equal(of({ state: 'connecting', syncDue: null, lastError: 'receiver: refused' }), 'error');
  assert.equal(of({ state: 'paused', syncDue: 'resync' }), 'paused');
});

test('progress averages the syncing disks (fractions 0..1 as percent); queued bytes count regions still to copy', () => {
  const from: SendingFrom = {
    journal: { dirtyRegions: () => [{ offset: 0, length: 4096 }] },
    exportName: null,
    viewId: 'v1',
  };
  const status = machineReplicationStatus(
    'vm1',
    [
      disk('vm1/d0', { syncProgress: 0.2, wireBytesSent: 10 }),
      disk('vm1/d1', { syncProgress: 0.41, wireBytesSent: 5, resyncRequired: true, bytesPending: 100 }),
      disk('vm1/d2', { lastError: 'refused' }),
    ],
    new Map([['vm1/d1', from]]),
    noWrites,
  );
  assert.equal(status.progress, 30);
  assert.equal(status.queuedBytes, 4096 + 100);
  assert.equal(status.sentBytes, 15);
  assert.equal(status.lastError, 'refused');
  assert.equal(status.state, 'resync');
});

test('progress weighs each disk by its size and counts bytes worked through of bytes to do', () => {
  const report = (kind: 'initial' | 'hash', diskBytes: number, more: Partial<SyncReport>): SyncReport => ({
    ...newSyncReport(kind, diskBytes),
    ...more,
  });
  const status = machineReplicationStatus(
    'vm1',
    [
      disk('vm1/d0', {
        state: 'initial-sync',
        syncProgress: 0.5,
        lastSync: report('initial', 300, { regionBytes: 300, copiedBytes: 150 }),
      }),
      disk('vm1/d1', {
        state: 'resync',
        syncProgress: 0.25,
        lastSync: report('hash', 100, { comparedBytes: 50 }),
      }),
    ],
    new Map(),
    noWrites,
  );
  // (300 × 0.5 + 100 × 0.25) / 400
  assert.equal(status.progress, 43);
  assert.deepEqual(status.copy, { doneBytes: 150 + 50, totalBytes: 300 + 100 });
  assert.equal(status.state, 'initial-sync');
  // A copy that has not finished never shows 100 %.
  const almost = machineReplicationStatus(
    'vm1',
    [disk('vm1/d0', { state: 'initial-sync', syncProgress: 0.999 })],
    new Map(),
    noWrites,
  );
  assert.equal(almost.progress, 99);
});

test('lag is the age of the oldest write the target does not hold', () => {
  const from: SendingFrom = { journal: { dirtyRegions: () => [] }, exportName: 'vm1.d0', viewId: null };
  const lastWrite = new Date(Date.now() - 30_000).toISOString();
  const status = machineReplicationStatus(
    'vm1',
    [disk('vm1/d0', { bytesPending: 1, lastAckedRecordTimeMs: Date.now() - 60_000 }), disk('vm1/d1')],
    new Map([['vm1/d0', from]]),
    (name) => (name === 'vm1.d0' ? lastWrite : null),
  );
  assert.ok(
    status.lagSeconds !== null && status.lagSeconds >= 60 && status.lagSeconds < 70,
    `${status.lagSeconds}`,
  );
  const idle = machineReplicationStatus('vm1', [disk('vm1/d0')], new Map(), noWrites);
  assert.equal(idle.lagSeconds, 0);
});
