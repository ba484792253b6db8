import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import type { MachineDefinition } from '../hypervisor/hypervisor.ts';
import { QemuDriver } from '../hypervisor/index.ts';
import { checkedHypervisor } from './checked-hypervisor.ts';

let dir: string;
let images: string;
let driver: QemuDriver;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-boot-'));
  images = join(dir, 'images');
  await mkdir(images);
  await writeFile(join(images, 'vmlinuz'), 'kernel');
  await symlink('/etc/shadow', join(images, 'initrd-link'));
  driver = new QemuDriver({ stateDir: join(dir, 'state') });
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const machine = (name: string, initrd: string): MachineDefinition => ({
  name,
  cpus: 1,
  memoryMiB: 128,
  disks: [{ diskId: 'disk0', nbdUri: `nbd+unix:///disk0?socket=${join(dir, 'disks.sock')}` }],
  nics: [],
  boot: { kernel: join(images, 'vmlinuz'), initrd, cmdline: '' },
});

const refusedFor = (name: string, field: string) => (error: Error & { code?: string; details?: object }) => {
  assert.equal(error.code, 'bad_request');
  assert.deepEqual(error.details, {
    field,
    source: field === 'boot.initrd' ? join(images, 'initrd-link') : '/etc/shadow',
    allowedFolders: [images],
    machine: name,
  });
  assert.match(error.message, new RegExp(`^machine '${name}': ${field}: `));
  return true;
};

it('refuses to define a machine whose initrd is a link out of the storage folders, or outside them', async () => {
  const served = checkedHypervisor(driver, [images]);
  await assert.rejects(
    served.define({ machine: machine('vm1', join(images, 'initrd-link')) }),
    refusedFor('vm1', 'boot.initrd'),
  );
  await assert.rejects(
    served.define({
      machine: {
        ...machine('vm1', join(images, 'vmlinuz')),
        boot: { kernel: '/etc/shadow', initrd: null, cmdline: '' },
      },
    }),
    refusedFor('vm1', 'boot.kernel'),
  );
  assert.equal((await driver.status({ name: 'vm1' })).state, 'absent', 'nothing was defined');
  assert.equal((await served.define({ machine: machine('vm1', join(images, 'vmlinuz')) })).state, 'shut-off');
  await served.undefine({ name: 'vm1' });
});

it('refuses to start a machine defined behind its back with such a file (before QEMU runs)', async () => {
  await driver.define({ machine: machine('vm2', join(images, 'initrd-link')) });
  await assert.rejects(
    checkedHypervisor(driver, [images]).start({ name: 'vm2' }),
    refusedFor('vm2', 'boot.initrd'),
  );
  assert.equal((await driver.status({ name: 'vm2' })).state, 'shut-off');
  await driver.undefine({ name: 'vm2' });
});
