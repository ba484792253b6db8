import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from '../../errors/index.ts';
import { memoryMiB, parseDiskSpec, parseNicSpec } from './machine-commands.ts';

test('disk specs: ID=SIZE, ID=PATH:SIZE and the older ID:SIZE:PATH, sizes in units', () => {
  assert.deepEqual(parseDiskSpec('disk0=10G'), { id: 'disk0', sizeBytes: 10 * 2 ** 30 });
  assert.deepEqual(parseDiskSpec('disk0=/srv/images/a:b.img:64M'), {
    id: 'disk0',
    source: '/srv/images/a:b.img',
    sizeBytes: 64 << 20,
  });
  assert.deepEqual(parseDiskSpec('disk0:1048576:/srv/images/a.img'), {
    id: 'disk0',
    sizeBytes: 1 << 20,
    source: '/srv/images/a.img',
  });
  for (const bad of ['disk0=12Q', 'disk0=', 'disk0:64M', 'disk0=-1G']) {
    assert.throws(
      () => parseDiskSpec(bad),
      (e: unknown) => e instanceof HavenError && e.details.field === 'disk' && e.message.includes(bad),
    );
  }
});

test('NIC specs: network, mac, static address or dhcp; unknown settings refused', () => {
  assert.deepEqual(parseNicSpec('lan'), { network: 'lan', mac: null, ip: { mode: 'dhcp' } });
  assert.deepEqual(parseNicSpec('lan,mac=52:54:00:00:00:01,ip=10.0.0.5/24,gw=10.0.0.1,dns=10.0.0.53'), {
    network: 'lan',
    mac: '52:54:00:00:00:01',
    ip: { mode: 'static', address: '10.0.0.5', prefixLength: 24, gateway: '10.0.0.1', dns: ['10.0.0.53'] },
  });
  for (const bad of ['', 'mac=x', 'lan,ip=10.0.0.5', 'lan,vlan=3']) {
    assert.throws(
      () => parseNicSpec(bad),
      (e: unknown) => e instanceof HavenError && e.details.field === 'nic',
    );
  }
});

test('memory in units, a bare number in MiB', () => {
  assert.equal(memoryMiB('4G'), 4096);
  assert.equal(memoryMiB('512M'), 512);
  assert.equal(memoryMiB('2048'), 2048);
  assert.equal(memoryMiB(undefined), undefined);
  for (const bad of ['1K', '4Q', '0G']) {
    assert.throws(
      () => memoryMiB(bad),
      (e: unknown) => e instanceof HavenError && e.details.field === 'memory',
    );
  }
});
