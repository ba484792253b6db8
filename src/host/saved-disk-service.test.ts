import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { HavenError } from '../errors/index.ts';
import { serverLegImageOf } from './host-disk-service.ts';
import type { DiskExport, DiskService } from './host-services.ts';
import { HostStateFile } from './host-state-file.ts';
import { notAvailableServices } from './not-available-services.ts';
import { savedDiskService } from './saved-disk-service.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-saved-disks-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A disk service that only remembers what is attached. */
function fakeDisks(): DiskService {
  const attached: DiskExport[] = [];
  return {
    ...notAvailableServices().disk,
    list: async (params) =>
      attached.filter((d) => params?.machineId === undefined || d.machineId === params.machineId),
    attach: async ({ machineId, diskId, source, sizeBytes }) => {
      const exported = { machineId, diskId, source, sizeBytes, nbdUri: `nbd:${diskId}`, pendingBytes: 0 };
      attached.push(exported);
      return exported;
    },
    detach: async ({ machineId, diskId }) => {
      attached.splice(
        attached.findIndex((d) => d.machineId === machineId && d.diskId === diskId),
        1,
      );
    },
  };
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

test('attached disks are saved, and forgotten when detached', async () => {
  const statePath = join(dir, 'attach.json');
  const disks = savedDiskService(fakeDisks(), await HostStateFile.load(statePath), dir);
  const d0 = { machineId: 'vm1', diskId: 'd0', source: '/img/d0', sizeBytes: 4096 };
  await disks.attach(d0);
  assert.equal((await disks.attach(d0)).nbdUri, 'nbd:d0', 'attaching again returns the export');
  await disks.attach({ ...d0, diskId: 'd1' });
  assert.deepEqual((await HostStateFile.load(statePath)).disks, [d0, { ...d0, diskId: 'd1' }]);
  await assert.rejects(
    disks.attach({ ...d0, source: '/img/other' }),
    (e: unknown) => e instanceof HavenError && e.code === 'conflict',
  );
  await disks.detach({ machineId: 'vm1', diskId: 'd0' });
  assert.deepEqual((await HostStateFile.load(statePath)).disks, [{ ...d0, diskId: 'd1' }]);
});

test('a fresh journal needs the image, and drops the old journal', async () => {
  const state = await HostStateFile.load(join(dir, 'reset.json'));
  const disks = savedDiskService(fakeDisks(), state, dir);
  const journal = join(dir, 'journals', 'vm2', 'd0');
  await mkdir(journal, { recursive: true });
  const image = join(dir, 'vm2-d0.img');
  const d0 = { machineId: 'vm2', diskId: 'd0', source: image, sizeBytes: 4096, resetJournal: true };
  await assert.rejects(disks.attach(d0), (e: unknown) => e instanceof HavenError && e.code === 'not_found');
  assert.equal(await exists(journal), true);
  assert.deepEqual(state.disks, []);
  await writeFile(image, Buffer.alloc(4096));
  await disks.attach(d0);
  assert.equal(await exists(journal), false);
  assert.deepEqual(state.disks, [{ machineId: 'vm2', diskId: 'd0', source: image, sizeBytes: 4096 }]);
});

test('a server leg with a fresh journal needs its staging image, not its device on the host', async () => {
  const state = await HostStateFile.load(join(dir, 'reset-leg.json'));
  const disks = savedDiskService(fakeDisks(), state, dir);
  const ref = { machineId: 'srv1', diskId: 'disk0' };
  const leg = { ...ref, source: '/dev/vda', sizeBytes: 4096, serverLeg: true, resetJournal: true };
  await assert.rejects(disks.attach(leg), /disk image '.*\/servers\/srv1\/disk0\.img' does not exist/);
  await mkdir(join(dir, 'servers', 'srv1'), { recursive: true });
  await writeFile(serverLegImageOf(dir, ref), Buffer.alloc(4096));
  await disks.attach(leg);
  assert.deepEqual(state.disks, [{ ...ref, source: '/dev/vda', sizeBytes: 4096, serverLeg: true }]);
});
