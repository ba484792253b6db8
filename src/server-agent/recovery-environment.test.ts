/**
 * The recovery environment's options: what it is told and how. The whole
 * failback onto a server (the environment network-booted by a guest playing
 * the server, copying the diverged ranges, the server's own system re-adding
 * its stale leg) runs in src/docs/physical-servers-guide.test.ts and
 * bench/server-failback.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { failbackConfig, mergeRanges } from './recovery-environment.ts';

describe('recovery environment options', () => {
  it('merges overlapping and touching ranges and drops empty ones', () => {
    assert.deepEqual(
      mergeRanges([
        { offset: 8192, length: 4096 },
        { offset: 0, length: 4096 },
        { offset: 4096, length: 100 },
        { offset: 9000, length: 10 },
        { offset: 50_000, length: 0 },
      ]),
      [
        { offset: 0, length: 4196 },
        { offset: 8192, length: 4096 },
      ],
    );
    assert.throws(() => mergeRanges([{ offset: -1, length: 1 }]), /range -1\+1 is not a byte offset/);
  });

  it('writes failback.conf only from words the script can take', () => {
    const options = {
      export: { address: '192.0.2.10', port: 10809, tlsHostname: 'primary.example', caPem: '' },
      identity: { machineId: 'm-1', stateDir: '/etc/haven' },
      disks: [
        { device: '/dev/sda', array: '/dev/md0', exportName: 'm-1.disk0', ranges: [] },
        { device: '/dev/sdb', array: '/dev/md1', exportName: 'm-1.disk1', ranges: [] },
      ],
    };
    assert.equal(
      failbackConfig({ ...options, network: { address: '192.0.2.20/24', gateway: '192.0.2.1' } }),
      [
        'export 192.0.2.10 10809 primary.example',
        'identity m-1 /etc/haven',
        'disk /dev/sda /dev/md0 m-1.disk0 /etc/haven/failback.0.ranges',
        'disk /dev/sdb /dev/md1 m-1.disk1 /etc/haven/failback.1.ranges',
        'network static 192.0.2.20/24 192.0.2.1',
        'then reboot',
        '',
      ].join('\n'),
    );
    const disk = options.disks[0]!;
    assert.throws(
      () => failbackConfig({ ...options, disks: [{ ...disk, device: '/dev/sda; reboot' }] }),
      /device .* is not a device path/,
    );
    assert.throws(
      () => failbackConfig({ ...options, disks: [{ ...disk, device: '/dev/../etc/shadow' }] }),
      /device .* is not a device path/,
    );
    // Any device a server may be added with (the API's rule), by-path names with '.' and ':' too.
    const byPath = '/dev/disk/by-path/pci-0000:00:1f.2-ata-1';
    assert.match(
      failbackConfig({ ...options, disks: [{ ...disk, device: byPath }] }),
      /^disk \/dev\/disk\/by-path\/pci-0000:00:1f\.2-ata-1 /m,
    );
    assert.throws(
      () => failbackConfig({ ...options, export: { ...options.export, port: 0 } }),
      /export port 0 is not a TCP port/,
    );
    assert.throws(
      () =>
        failbackConfig({ ...options, export: { ...options.export, client: { certPem: '', keyPem: '' } } }),
      /either the server’s own identity .* or an embedded client certificate/,
    );
    assert.throws(() => failbackConfig({ ...options, disks: [] }), /1 to 16 disks, not 0/);
  });
});
