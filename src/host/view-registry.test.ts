import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { JournalRecord } from '../disk/index.ts';
import { HavenError } from '../errors/index.ts';
import { ReplicaStore } from '../replica/index.ts';
import { modelAt, randomHistory } from '../testing/replica-test-model.ts';
import { ViewRegistry } from './view-registry.ts';

const SIZE = 1 << 20;
const DISK = 'vm1/d0';
let dir: string;
let store: ReplicaStore;
let views: ViewRegistry;
let history: JournalRecord[];
let seq: number;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-views-'));
  store = await ReplicaStore.open(join(dir, 'replica'), { now: () => 0 });
  history = randomHistory(5, { size: SIZE, count: 40, maxWrite: 16 << 10, firstSeq: 0, startTimeMs: 0 });
  await store.ensureDisk(DISK, SIZE);
  await store.append(DISK, history);
  const points = store.listPoints(DISK);
  seq = points[Math.floor(points.length / 2)]!.seq;
  views = await ViewRegistry.listen(store, join(dir, 'views.sock'));
});

after(async () => {
  await views.closeAll();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const request = (viewId: string, writable: boolean) => ({
  viewId,
  machineId: 'vm1',
  pointId: `point-of-${viewId}`,
  writable,
  seqs: { d0: seq },
  failover: false,
});
const notFound = (e: unknown) => e instanceof HavenError && e.code === 'not_found';

test('a read-only view shows the disk at its point, exported on the view socket', async () => {
  const opened = await views.open(request('ro', false));
  assert.equal(opened.writable, false);
  assert.ok((await views.backend('ro', 'd0').read(0, SIZE)).equals(modelAt(SIZE, history, seq)));
  const described = await views.describe(opened);
  assert.deepEqual(described.disks, [
    { diskId: 'd0', nbdUri: `nbd+unix:///ro.d0?socket=${views.socket}`, sizeBytes: SIZE },
  ]);
  assert.throws(() => views.writable('ro', 'vm1'), notFound);
  assert.deepEqual(views.overlaysAt(DISK, seq), []);
  await views.close(opened, false);
  assert.equal(views.get('ro'), undefined);
  assert.throws(() => views.backend('ro', 'd0'), notFound);
});

test('a writable view keeps its overlay when closed, unless its writes are discarded', async () => {
  const opened = await views.open(request('rw', true));
  assert.equal(views.writable('rw', 'vm1'), opened);
  assert.throws(() => views.writable('rw', 'vm2'), notFound);
  assert.deepEqual(views.overlaysAt(DISK, seq), [opened.disks[0]!.view]);
  assert.deepEqual(views.overlaysAt(DISK, seq + 1), []);
  const data = Buffer.alloc(4096, 7);
  await views.backend('rw', 'd0').write(0, data, { fua: true });
  const status = (await views.describe(opened)).disks[0]!.status;
  assert.ok(
    status !== undefined && status.journal.nextSeq > status.journal.firstSeq,
    'the write is journaled',
  );

  await views.close(opened, false);
  assert.notEqual(await store.keptView(DISK, 'rw'), null);
  const resumed = await views.open(request('rw', true));
  assert.ok((await views.backend('rw', 'd0').read(0, 4096)).equals(data), 'its writes are back');
  await views.close(resumed, true);
  assert.equal(await store.keptView(DISK, 'rw'), null);
});

test('a view that cannot open every disk is not opened, and leaves no overlay behind', async () => {
  await assert.rejects(views.open({ ...request('broken', true), seqs: { d0: seq, missing: 1 } }));
  assert.equal(views.get('broken'), undefined);
  assert.equal(await store.keptView(DISK, 'broken'), null);
  // Its exports are gone: the same view opens once every disk exists.
  const opened = await views.open(request('broken', true));
  await views.close(opened, true);
});
