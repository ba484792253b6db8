import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { HavenError } from '../errors/index.ts';
import { ReplicaStore } from '../replica/index.ts';
import { randomHistory } from '../testing/replica-test-model.ts';
import { HostStateFile } from './host-state-file.ts';
import { notAvailableServices } from './not-available-services.ts';
import { ReplicaService } from './replica-service.ts';
import { ViewRegistry } from './view-registry.ts';

const run = promisify(execFile);
const SIZE = 1 << 20;
let dir: string;
let store: ReplicaStore;
let views: ViewRegistry;
let state: HostStateFile;
let replica: ReplicaService;
const sendingViews = new Set<string>();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-replica-service-'));
  store = await ReplicaStore.open(join(dir, 'replica'), { now: () => 0 });
  await store.ensureDisk('vm1/d0', SIZE);
  await store.append('vm1/d0', randomHistory(9, { size: SIZE, count: 30, firstSeq: 0, startTimeMs: 0 }));
  views = await ViewRegistry.listen(store, join(dir, 'views.sock'));
  state = await HostStateFile.load(join(dir, 'data-path.json'));
  replica = new ReplicaService({
    dataDir: dir,
    replicaStore: store,
    views,
    replication: {
      isSending: () => false,
      sendsMachine: () => false,
      refuseIfSendingView: (viewId) => {
        if (sendingViews.has(viewId)) throw new HavenError('operation_not_allowed', `sending ${viewId}`);
      },
    },
    diskService: {
      list: () => [],
      backend: (name) => {
        throw new HavenError('not_found', `no export '${name}'`);
      },
    },
    disks: notAvailableServices().disk,
    state,
  });
});

after(async () => {
  await views.closeAll();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const code = (wanted: string) => (e: unknown) => e instanceof HavenError && e.code === wanted;

test("a one-disk machine's points are its disk's; other machines have none", async () => {
  const points = await replica.listPoints({ machineId: 'vm1' });
  assert.deepEqual(
    points.map((p) => p.id),
    store.listPoints('vm1/d0').map((p) => p.id),
  );
  assert.deepEqual(await replica.listPoints({ machineId: 'vm2' }), []);
});

test('views are asked for by a valid id, of a point that exists', async () => {
  const [point] = await replica.listPoints({ machineId: 'vm1' });
  const ask = { machineId: 'vm1', pointId: point!.id, writable: false };
  await assert.rejects(replica.openView({ ...ask, viewId: 'no spaces' }), code('validation_failed'));
  await assert.rejects(replica.openView({ ...ask, pointId: 'vm1/d0@999999' }), code('not_found'));
  await assert.rejects(replica.openView({ ...ask, machineId: 'vm2' }), code('not_found'));
  const view = await replica.openView({ ...ask, viewId: 'ro' });
  assert.deepEqual(await replica.openView({ ...ask, viewId: 'ro' }), view, 'opening it again returns it');
  await assert.rejects(replica.openView({ ...ask, viewId: 'ro', writable: true }), code('conflict'));
  assert.deepEqual(state.views, [], 'read-only views are not kept');
  await replica.closeView({ viewId: 'ro', discardWrites: false });
  await assert.rejects(replica.viewInfo({ viewId: 'ro' }), code('not_found'));
});

test('writable views are kept across restarts until closed, and not closed while they are sent', async () => {
  const point = (await replica.listPoints({ machineId: 'vm1' })).at(-1)!;
  await replica.openView({ machineId: 'vm1', pointId: point.id, writable: true, viewId: 'rw' });
  assert.deepEqual(state.views, [
    {
      viewId: 'rw',
      machineId: 'vm1',
      pointId: point.id,
      seqs: { d0: store.listPoints('vm1/d0').at(-1)!.seq },
    },
  ]);
  await views.close(views.get('rw')!, false);
  await state.saveView({ viewId: 'gone', machineId: 'vm1', pointId: point.id, seqs: { d9: 1 } });
  await replica.reopenViews();
  assert.equal((await replica.viewInfo({ viewId: 'rw' })).writable, true);
  assert.deepEqual(
    state.views.map((v) => v.viewId),
    ['rw'],
    'a view that cannot be reopened is forgotten',
  );
  sendingViews.add('rw');
  await assert.rejects(
    replica.closeView({ viewId: 'rw', discardWrites: true }),
    code('operation_not_allowed'),
  );
  sendingViews.delete('rw');
  await replica.closeView({ viewId: 'rw', discardWrites: true });
  assert.deepEqual(state.views, []);
});

test('points are deleted only all at once', async () => {
  await assert.rejects(
    replica.deletePoints({ machineId: 'vm1', before: new Date().toISOString() }),
    code('not_available'),
  );
});

test('a machine on its own qcow2 image: the replica is seeded from it, and its last point written back into it in place, only blocks that differ', async () => {
  await mkdir(join(dir, 'run'), { recursive: true });
  const original = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i += 4096) original.writeUInt32LE(i / 4096 + 1, i);
  const raw = join(dir, 'own.raw');
  const image = join(dir, 'own.qcow2');
  await writeFile(raw, original);
  await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, image]);
  const ref = { machineId: 'vm9', diskId: 'd0', imagePath: image, format: 'qcow2', sizeBytes: SIZE };
  await replica.seedFromImage(ref);
  await replica.seedFromImage(ref);
  assert.deepEqual(await store.read('vm9/d0', 0, SIZE), original);
  // The copy's writes follow from sequence 1 (a sink's journal); the flush at the end is a point.
  const history = randomHistory(4, { size: SIZE, count: 12, firstSeq: 1, maxWrite: 16 << 10 });
  const last = history.at(-1)!;
  history.push({ seq: last.seq + 1, timeMs: last.timeMs + 1, kind: 'flush', offset: 0, length: 0 });
  await store.append('vm9/d0', history);
  const expected = await store.read('vm9/d0', 0, SIZE);
  const done = await replica.writeBackToImage({
    machineId: 'vm9',
    restore: [{ diskId: 'd0', imagePath: image, format: 'qcow2' }],
  });
  assert.ok(done.pointId?.endsWith(`@${last.seq + 1}`), String(done.pointId));
  assert.ok(done.writtenBytes > 0 && done.writtenBytes <= done.comparedBytes, JSON.stringify(done));
  assert.ok(done.comparedBytes < SIZE, `only the regions written were compared: ${done.comparedBytes}`);
  await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', image, raw]);
  assert.deepEqual(await readFile(raw), expected);
  assert.match((await run('qemu-img', ['info', image])).stdout, /file format: qcow2/);
  assert.ok(!store.listDisks().some((d) => d.diskKey === 'vm9/d0'), 'the reverse replica is removed');
  assert.deepEqual(
    await replica.writeBackToImage({
      machineId: 'vm9',
      restore: [{ diskId: 'd0', imagePath: image, format: 'qcow2' }],
    }),
    { pointId: null, comparedBytes: 0, writtenBytes: 0 },
  );
});
