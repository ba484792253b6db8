import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DomainDescription, HypervisorInventory } from '../../host/host-services.ts';
import { copyIdentity, copyUuid } from './copy-identity.ts';

function domain(name: string, uuid: string | null, mac: string): DomainDescription {
  return {
    name,
    uuid,
    cpus: 1,
    memoryMiB: 128,
    state: 'shut-off',
    disks: [],
    nics: [{ mac, network: 'br0', type: 'bridge', model: 'virtio' }],
    boot: { kind: 'devices', devices: ['hd'] },
    consoleFile: null,
    guestAgent: false,
  };
}
const libvirt = (...domains: DomainDescription[]): HypervisorInventory => ({
  driver: 'libvirt',
  uri: 'qemu:///system',
  domains,
});
const nic = { network: 'br0', mac: '52:54:00:aa:bb:01' };

test('a copy sharing a hypervisor with its source gets its own name, UUID and MAC, and finds itself again', () => {
  const source = domain('web', 'aaaaaaaa-0000-4000-8000-000000000001', '52:54:00:AA:BB:01');
  const first = copyIdentity('m1', 'web', [nic], libvirt(source));
  assert.equal(first.name, 'web-recovered');
  assert.equal(first.uuid, copyUuid('m1', 'web-recovered'));
  assert.notEqual(first.uuid, source.uuid);
  assert.match(first.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.deepEqual(first.nics, [{ network: 'br0', mac: null }], 'the driver derives a MAC from the new name');
  // A retry after the copy was defined finds its own domain, not a third name.
  const defined = domain('web-recovered', first.uuid, '52:54:00:12:34:56');
  assert.equal(copyIdentity('m1', 'web', [nic], libvirt(source, defined)).name, 'web-recovered');
  // Another machine's domain under the second name is skipped too.
  assert.equal(copyIdentity('m2', 'web', [nic], libvirt(source, defined)).name, 'web-recovered-2');
});

test('on a hypervisor of its own the copy keeps the wanted name and its MACs', () => {
  const alone = copyIdentity('m1', 'web', [nic], libvirt());
  assert.equal(alone.name, 'web');
  assert.deepEqual(alone.nics, [nic]);
  // The built-in QEMU driver (no UUIDs) names only Haven's own machines: an existing one is the copy.
  const qemu: HypervisorInventory = {
    driver: 'qemu',
    uri: null,
    domains: [domain('web', null, '52:54:00:00:00:09')],
  };
  assert.equal(copyIdentity('m1', 'web', [nic], qemu).name, 'web');
});
