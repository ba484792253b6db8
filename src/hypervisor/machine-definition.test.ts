import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MachineDefinition } from './hypervisor.ts';
import { derivedMac, staticIpWords, validateMachineDefinition } from './machine-definition.ts';
import { parseNbdUri } from './nbd-uri.ts';
import { NBD_RECONNECT_DELAY_SECONDS, qemuCommandLine } from './qemu-command-line.ts';

const base: MachineDefinition = {
  name: 'web-1',
  cpus: 2,
  memoryMiB: 256,
  disks: [{ diskId: 'disk0', nbdUri: 'nbd+unix:///web-1-disk0?socket=/run/haven/nbd.sock' }],
  nics: [{ network: 'br-prod', mac: null }],
};

function refusal(field: string) {
  return (error: unknown) => {
    assert.equal((error as { code?: string }).code, 'validation_failed');
    assert.equal((error as { details: { field: string } }).details.field, field);
    return true;
  };
}

describe('machine definitions', () => {
  it('accepts a valid definition and fills a stable MAC', () => {
    const stored = validateMachineDefinition(base);
    assert.equal(stored.nics[0]!.mac, derivedMac('web-1', 0));
    assert.match(stored.nics[0]!.mac, /^52:54:00(:[0-9a-f]{2}){3}$/);
    assert.notEqual(derivedMac('web-1', 0), derivedMac('web-1', 1));
    assert.notEqual(derivedMac('web-1', 0), derivedMac('web-2', 0));
    assert.equal(
      validateMachineDefinition({ ...base, nics: [{ network: 'br0', mac: '52:54:00:AA:BB:CC' }] }).nics[0]!
        .mac,
      '52:54:00:aa:bb:cc',
    );
  });

  it('refuses bad names, sizes, disks, networks and MACs, naming the field', () => {
    assert.throws(() => validateMachineDefinition({ ...base, name: '../etc' }), refusal('name'));
    assert.throws(() => validateMachineDefinition({ ...base, cpus: 0 }), refusal('cpus'));
    assert.throws(() => validateMachineDefinition({ ...base, cpus: 65 }), refusal('cpus'));
    assert.throws(() => validateMachineDefinition({ ...base, cpus: 1.5 }), refusal('cpus'));
    assert.throws(() => validateMachineDefinition({ ...base, memoryMiB: 64 }), refusal('memoryMiB'));
    assert.throws(() => validateMachineDefinition({ ...base, disks: [] }), refusal('disks'));
    assert.throws(
      () => validateMachineDefinition({ ...base, disks: [base.disks[0]!, base.disks[0]!] }),
      refusal('disks.diskId'),
    );
    assert.throws(
      () => validateMachineDefinition({ ...base, disks: [{ diskId: 'd0', nbdUri: '/var/lib/disk.img' }] }),
      refusal('nbdUri'),
    );
    assert.throws(
      () => validateMachineDefinition({ ...base, nics: [{ network: 'a-network-name-too-long', mac: null }] }),
      refusal('nics.network'),
    );
    assert.throws(
      () => validateMachineDefinition({ ...base, nics: [{ network: 'br0', mac: '01:00:5e:00:00:01' }] }),
      refusal('nics.mac'),
      'multicast MAC',
    );
    assert.throws(
      () =>
        validateMachineDefinition({
          ...base,
          nics: [
            {
              network: 'br0',
              mac: null,
              ip: { mode: 'static', address: '10.0.0.300', prefixLength: 24, gateway: null, dns: [] },
            },
          ],
        }),
      refusal('nics.ip.address'),
    );
    assert.throws(
      () => validateMachineDefinition({ ...base, boot: { kernel: 'vmlinuz', initrd: null, cmdline: '' } }),
      refusal('boot.kernel'),
    );
    assert.throws(
      () =>
        validateMachineDefinition({
          ...base,
          boot: { kernel: '/k', initrd: null, cmdline: 'haven.ip=10.0.0.1/24' },
        }),
      refusal('boot.cmdline'),
      'addresses come from the NICs, not a second source',
    );
  });

  it('carries static addresses to the kernel command line and leaves DHCP NICs alone', () => {
    const nics = [
      {
        network: 'br0',
        mac: null,
        ip: { mode: 'static' as const, address: '10.1.2.3', prefixLength: 24, gateway: '10.1.2.1', dns: [] },
      },
      { network: 'br1', mac: null, ip: { mode: 'dhcp' as const } },
      {
        network: 'br2',
        mac: null,
        ip: { mode: 'static' as const, address: '192.168.9.9', prefixLength: 16, gateway: null, dns: [] },
      },
    ];
    assert.deepEqual(staticIpWords(nics), ['haven.ip=10.1.2.3/24,10.1.2.1', 'haven.ip2=192.168.9.9/16']);
    const machine = validateMachineDefinition({
      ...base,
      nics,
      boot: { kernel: '/k', initrd: '/i', cmdline: 'console=ttyS0' },
    });
    const args = qemuCommandLine(
      machine,
      { qmpSocket: '/s/qmp.sock', pidFile: '/s/qemu.pid', consoleLog: '/s/console.log' },
      { accel: 'tcg', taps: ['t0', 't1', 't2'] },
    );
    assert.equal(
      args[args.indexOf('-append') + 1],
      'console=ttyS0 haven.ip=10.1.2.3/24,10.1.2.1 haven.ip2=192.168.9.9/16',
    );
  });
});

describe('NBD URIs', () => {
  it('parses unix and TCP URIs into QEMU socket addresses', () => {
    assert.deepEqual(parseNbdUri('nbd+unix:///vm1-disk0?socket=/run/haven/nbd.sock'), {
      server: { type: 'unix', path: '/run/haven/nbd.sock' },
      export: 'vm1-disk0',
    });
    assert.deepEqual(parseNbdUri('nbd://127.0.0.1:10810/d%200'), {
      server: { type: 'inet', host: '127.0.0.1', port: '10810' },
      export: 'd 0',
    });
    assert.deepEqual(parseNbdUri('nbd://[::1]/x').server, { type: 'inet', host: '::1', port: '10809' });
  });

  it('refuses other schemes and missing sockets', () => {
    for (const uri of [
      'file:///disk.img',
      'nbd+unix:///x',
      'nbd+unix:///x?socket=relative',
      'nbds://h/x',
      'not a uri',
    ]) {
      assert.throws(() => parseNbdUri(uri), { code: 'validation_failed' }, uri);
    }
  });
});

describe('QEMU command line', () => {
  it('puts NBD disks on virtio-blk, NICs on taps, and starts paused and daemonized, disks reconnecting', () => {
    const machine = validateMachineDefinition({
      ...base,
      disks: [...base.disks, { diskId: 'disk1', nbdUri: 'nbd://10.0.0.7:10809/web-1-disk1' }],
      nics: [{ network: 'br-prod', mac: '52:54:00:00:00:01' }],
    });
    const args = qemuCommandLine(
      machine,
      { qmpSocket: '/state/a,b/qmp.sock', pidFile: '/state/qemu.pid', consoleLog: '/state/console.log' },
      { accel: 'tcg', taps: ['hvtap0'] },
    );
    const after = (flag: string) => args.flatMap((arg, i) => (arg === flag ? [args[i + 1]!] : []));
    assert.deepEqual(after('-accel'), ['tcg']);
    assert.deepEqual(after('-smp'), ['2']);
    assert.deepEqual(after('-m'), ['256M']);
    assert.ok(args.includes('-daemonize') && args.includes('-S'));
    assert.deepEqual(after('-qmp'), ['unix:/state/a,,b/qmp.sock,server=on,wait=off'], 'commas doubled');
    assert.deepEqual(
      after('-blockdev').map((json) => JSON.parse(json)),
      [
        {
          driver: 'nbd',
          'node-name': 'disk0',
          server: { type: 'unix', path: '/run/haven/nbd.sock' },
          export: 'web-1-disk0',
          // A restarted host agent serves the disk again before QEMU gives up on it.
          'reconnect-delay': NBD_RECONNECT_DELAY_SECONDS,
        },
        {
          driver: 'nbd',
          'node-name': 'disk1',
          server: { type: 'inet', host: '10.0.0.7', port: '10809' },
          export: 'web-1-disk1',
          'reconnect-delay': NBD_RECONNECT_DELAY_SECONDS,
        },
      ],
    );
    assert.deepEqual(after('-device').slice(1), [
      'virtio-blk-pci,drive=disk0,serial=disk0,bootindex=0',
      'virtio-blk-pci,drive=disk1,serial=disk1,bootindex=1',
      'virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01',
    ]);
    assert.deepEqual(after('-netdev'), ['tap,id=net0,ifname=hvtap0,script=no,downscript=no']);
    assert.ok(!args.includes('-kernel'));
  });
});
