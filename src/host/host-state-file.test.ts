import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { HostStateFile } from './host-state-file.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-host-state-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const target = { hostId: 'h2', address: '127.0.0.1:9443', fingerprint: 'AA:BB' };
const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

test('a host that never saved anything starts empty, and asking to forget writes nothing', async () => {
  const path = join(dir, 'empty.json');
  const state = await HostStateFile.load(path);
  assert.deepEqual([state.disks, state.replications, state.trustedSenders, state.views], [[], [], [], []]);
  await state.forgetView('nothing');
  assert.equal(await exists(path), false);
});

test('every change is on disk when it returns, and a reload sees it', async () => {
  const path = join(dir, 'changes.json');
  const state = await HostStateFile.load(path);
  await state.addDisk({ machineId: 'vm1', diskId: 'd0', source: '/img/d0', sizeBytes: 4096 });
  await state.addDisk({ machineId: 'vm1', diskId: 'd0', source: '/img/d0', sizeBytes: 4096 });
  await state.addDisk({ machineId: 'vm1', diskId: 'd1', source: '/img/d1', sizeBytes: 8192 });
  await state.removeDisk({ machineId: 'vm1', diskId: 'd0' });
  await state.setReplication({ machineId: 'vm1', diskIds: ['d0'], target });
  await state.setReplication({ machineId: 'vm1', diskIds: ['d0', 'd1'], target, viewId: 'v1' });
  await state.setReplication({ machineId: 'vm2', diskIds: ['d0'], target });
  await state.removeReplication('vm2');
  await state.trustSender('CC:DD');
  await state.trustSender('CC:DD');
  await state.saveView({ viewId: 'v1', machineId: 'vm1', pointId: 'vm1/d0@5', seqs: { d0: 5 } });
  await state.saveView({ viewId: 'v2', machineId: 'vm1', pointId: 'vm1/d0@6', seqs: { d0: 6 } });
  await state.forgetView('v2');

  const again = await HostStateFile.load(path);
  assert.deepEqual(again.disks, [{ machineId: 'vm1', diskId: 'd1', source: '/img/d1', sizeBytes: 8192 }]);
  assert.deepEqual(again.replications, [{ machineId: 'vm1', diskIds: ['d0', 'd1'], target, viewId: 'v1' }]);
  assert.deepEqual(again.trustedSenders, ['CC:DD']);
  assert.deepEqual(again.views, [{ viewId: 'v1', machineId: 'vm1', pointId: 'vm1/d0@5', seqs: { d0: 5 } }]);
});

test('a file written before views were kept still loads', async () => {
  const path = join(dir, 'data-path.json');
  const saved = { disks: [], replications: [], trustedSenders: ['AA:BB'] };
  await writeFile(path, JSON.stringify(saved));
  const state = await HostStateFile.load(path);
  assert.deepEqual(state.trustedSenders, ['AA:BB']);
  assert.deepEqual(state.views, []);
  await state.trustSender('EE:FF');
  assert.deepEqual(JSON.parse(await readFile(path, 'utf8')), {
    ...saved,
    trustedSenders: ['AA:BB', 'EE:FF'],
  });
});
