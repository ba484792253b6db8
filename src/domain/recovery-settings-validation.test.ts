import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import { HavenError } from '../errors/index.ts';
import { staticNic } from '../testing/sample-nic.ts';
import type { NicSettings } from './model.ts';
import {
  assertValid,
  checkDiskLimit,
  type MachineToValidate,
  parseIp,
  type RecoveryValidationContext,
  validateFailbackTarget,
  validateForReprotect,
  validateRecoverySettings,
} from './recovery-settings-validation.ts';

const GiB = 1024 ** 3;

function machine(
  over: Partial<MachineToValidate['recoverySettings']> = {},
  disks?: MachineToValidate['disks'],
) {
  return {
    id: 'm-1',
    name: 'web-01',
    disks: disks ?? [{ id: 'disk0', sizeBytes: 10 * GiB, source: '/img/web.qcow2', hasSnapshots: false }],
    recoverySettings: {
      targetName: 'web-01',
      cpus: 2,
      memoryMiB: 2048,
      nics: [staticNic('lan')] as NicSettings[],
      ...over,
    },
  } satisfies MachineToValidate;
}

const context: RecoveryValidationContext = {
  networkMapping: { lan: 'dr-lan' },
  usedAddresses: [
    { address: '10.0.0.9', machineId: 'm-2', machineName: 'db-01' },
    { address: '10.0.0.5', machineId: 'm-1', machineName: 'web-01' },
    { address: '2001:db8::9', machineId: 'm-2', machineName: 'db-01' },
  ],
};

function nic(ip: NicSettings['ip'], over: Partial<NicSettings> = {}): NicSettings {
  return { network: 'lan', recoveryNetwork: null, mac: null, ip, ...over };
}
function staticIp(
  address: string,
  prefixLength: number,
  gateway: string | null = null,
): Extract<NicSettings['ip'], { mode: 'static' }> {
  return { mode: 'static', address, prefixLength, gateway, dns: [] };
}
function codes(m: MachineToValidate, ctx = context): string[] {
  return validateRecoverySettings(m, ctx).map((p) => `${p.field}:${p.code}`);
}

describe('validateRecoverySettings', () => {
  it('accepts good settings (its own address in usedAddresses is no clash)', () => {
    assert.deepEqual(validateRecoverySettings(machine(), context), []);
  });

  it('checks the target name as a lowercase host name of 1–63 characters', () => {
    const ok = ['a', 'web-01', '0db', 'x'.repeat(63)];
    const bad: [string, string][] = [
      ['', 'required'],
      ['x'.repeat(64), 'too_long'],
      ['Web-01', 'invalid_format'],
      ['-web', 'invalid_format'],
      ['web-', 'invalid_format'],
      ['web_01', 'invalid_format'],
      ['web.example', 'invalid_format'],
    ];
    for (const name of ok) assert.deepEqual(codes(machine({ targetName: name })), [], name);
    for (const [name, code] of bad) {
      assert.deepEqual(codes(machine({ targetName: name })), [`recoverySettings.targetName:${code}`], name);
    }
  });

  it('checks CPUs and memory, including the recovery host capacity', () => {
    const cases: [number, number, string[]][] = [
      [1, 128, []],
      [64, 1024 * 1024, []],
      [0, 2048, ['recoverySettings.cpus:out_of_range']],
      [65, 2048, ['recoverySettings.cpus:out_of_range']],
      [1.5, 2048, ['recoverySettings.cpus:not_integer']],
      [2, 127, ['recoverySettings.memoryMiB:out_of_range']],
      [2, 1024 * 1024 + 1, ['recoverySettings.memoryMiB:out_of_range']],
      [2, 2048.5, ['recoverySettings.memoryMiB:not_multiple']],
    ];
    for (const [cpus, memoryMiB, want] of cases) {
      assert.deepEqual(codes(machine({ cpus, memoryMiB })), want, `${cpus} ${memoryMiB}`);
    }
    const small = { ...context, hostMaxCpus: 4, hostMemoryMiB: 4096 };
    assert.deepEqual(codes(machine({ cpus: 4, memoryMiB: 4096 }), small), []);
    assert.deepEqual(codes(machine({ cpus: 8, memoryMiB: 8192 }), small), [
      'recoverySettings.cpus:exceeds_host',
      'recoverySettings.memoryMiB:exceeds_host',
    ]);
  });

  it('needs a network mapping or an explicit recovery network for every NIC', () => {
    const nics = [
      nic({ mode: 'dhcp' }),
      nic({ mode: 'dhcp' }, { network: 'storage' }),
      nic({ mode: 'dhcp' }, { network: 'storage', recoveryNetwork: 'dr-storage' }),
      nic({ mode: 'dhcp' }, { recoveryNetwork: ' ' }),
    ];
    assert.deepEqual(codes(machine({ nics })), [
      'recoverySettings.nics[1].network:not_mapped',
      'recoverySettings.nics[3].recoveryNetwork:required',
    ]);
    const [problem] = validateRecoverySettings(machine({ nics: [nics[1]!] }), context);
    assert.match(problem!.message, /Network 'storage' has no mapping at the recovery site/);
    const known = { ...context, recoveryNetworks: ['dr-lan'] };
    assert.deepEqual(codes(machine({ nics: nics.slice(0, 1) }), known), []);
    assert.deepEqual(codes(machine({ nics: nics.slice(2, 3) }), known), [
      'recoverySettings.nics[0].recoveryNetwork:unknown_network',
    ]);
  });

  it('checks MAC addresses', () => {
    const macs: [string, string[]][] = [
      ['52:54:00:AB:cd:ef', []],
      ['52:54:00:ab:cd', ['invalid_format']],
      ['52-54-00-ab-cd-ef', ['invalid_format']],
      ['5254.00ab.cdef', ['invalid_format']],
      ['01:00:5e:00:00:01', ['invalid_address']],
    ];
    for (const [mac, want] of macs) {
      const got = validateRecoverySettings(machine({ nics: [nic({ mode: 'dhcp' }, { mac })] }), context);
      assert.deepEqual(
        got.map((p) => p.code),
        want,
        mac,
      );
    }
    const twice = [
      nic({ mode: 'dhcp' }, { mac: '52:54:00:00:00:01' }),
      nic({ mode: 'dhcp' }, { mac: '52:54:00:00:00:01' }),
    ];
    assert.deepEqual(codes(machine({ nics: twice })), ['recoverySettings.nics[1].mac:duplicate']);
  });

  it('checks static IPv4 and IPv6 settings', () => {
    const at = 'recoverySettings.nics[0].ip';
    const cases: [NicSettings['ip'], string[]][] = [
      [staticIp('192.168.1.10', 24, '192.168.1.1'), []],
      [staticIp('192.168.1.10', 32), []],
      // RFC 3021: both addresses of a /31 are hosts.
      [staticIp('10.0.0.0', 31, '10.0.0.1'), []],
      [staticIp('10.0.0.3', 31), []],
      [staticIp('10.0.0.4', 30), [`${at}.address:invalid_address`]],
      [staticIp('2001:db8::10', 64, '2001:db8::1'), []],
      [staticIp('2001:db8::10', 64, 'fe80::1'), [`${at}.gateway:outside_subnet`]],
      [staticIp('192.168.1.10', 24, '192.168.2.1'), [`${at}.gateway:outside_subnet`]],
      [staticIp('192.168.1.10', 23, '192.168.0.1'), []],
      [staticIp('192.168.1.10', 24, '2001:db8::1'), [`${at}.gateway:family_mismatch`]],
      [staticIp('192.168.1.10', 24, '192.168.1.10'), [`${at}.gateway:invalid_address`]],
      [staticIp('192.168.1.10', 24, 'router'), [`${at}.gateway:invalid_format`]],
      [staticIp('192.168.1.256', 24), [`${at}.address:invalid_format`]],
      [staticIp('192.168.01.1', 24), [`${at}.address:invalid_format`]],
      [staticIp('192.168.1.10', 33), [`${at}.prefixLength:out_of_range`]],
      [staticIp('192.168.1.10', 0), [`${at}.prefixLength:out_of_range`]],
      [staticIp('2001:db8::10', 129), [`${at}.prefixLength:out_of_range`]],
      [staticIp('2001:db8::10', 128), []],
      [staticIp('192.168.1.0', 24), [`${at}.address:invalid_address`]],
      [staticIp('192.168.1.255', 24), [`${at}.address:invalid_address`]],
      [staticIp('127.0.0.2', 8), [`${at}.address:invalid_address`]],
      [staticIp('224.0.0.1', 8), [`${at}.address:invalid_address`]],
      [staticIp('::1', 64), [`${at}.address:invalid_address`]],
      [staticIp('10.0.0.9', 24), [`${at}.address:address_in_use`]],
      [staticIp('2001:0db8:0:0::0009', 64), [`${at}.address:address_in_use`]],
      [{ ...staticIp('10.1.0.5', 16), dns: ['10.1.0.2', 'dns.local'] }, [`${at}.dns[1]:invalid_format`]],
    ];
    for (const [ip, want] of cases) {
      assert.deepEqual(codes(machine({ nics: [nic(ip)] })), want, JSON.stringify(ip));
    }
    const [inUse] = validateRecoverySettings(machine({ nics: [nic(staticIp('10.0.0.9', 24))] }), context);
    assert.equal(inUse!.message, "10.0.0.9 is already used by machine 'db-01'");
    const twice = [nic(staticIp('10.7.0.5', 24)), nic(staticIp('10.7.0.5', 24))];
    assert.deepEqual(codes(machine({ nics: twice })), [`recoverySettings.nics[1].ip.address:duplicate`]);
  });

  it('checks disks', () => {
    const disk = (id: string, sizeBytes: number) => ({ id, sizeBytes, source: 's', hasSnapshots: false });
    assert.deepEqual(codes(machine({}, [])), ['disks:required']);
    assert.deepEqual(
      codes(machine({}, [disk('d0', 0), disk('d1', 1000), disk('d1', 512), disk('d3', -512)])),
      [
        'disks[0].sizeBytes:out_of_range',
        'disks[1].sizeBytes:not_multiple',
        'disks[2].id:duplicate',
        'disks[3].sizeBytes:out_of_range',
      ],
    );
  });

  it('reports every problem at once', () => {
    const m = machine(
      {
        targetName: 'Bad Name',
        cpus: 0,
        memoryMiB: 64,
        nics: [nic(staticIp('10.0.0.9', 24, '10.9.0.1'), { network: 'x' })],
      },
      [],
    );
    assert.deepEqual(codes(m), [
      'recoverySettings.targetName:invalid_format',
      'recoverySettings.cpus:out_of_range',
      'recoverySettings.memoryMiB:out_of_range',
      'recoverySettings.nics[0].network:not_mapped',
      'recoverySettings.nics[0].ip.address:address_in_use',
      'recoverySettings.nics[0].ip.gateway:outside_subnet',
      'disks:required',
    ]);
    try {
      assertValid(validateRecoverySettings(m, context), m);
      assert.fail('expected validation_failed');
    } catch (error) {
      assert.ok(error instanceof HavenError);
      assert.equal(error.code, 'validation_failed');
      assert.equal(error.status, 400);
      assert.match(
        error.message,
        /^Machine 'web-01' is not ready \(7 problems\): recoverySettings.targetName: /,
      );
      assert.equal(error.details.machineId, 'm-1');
      assert.equal((error.details.problems as unknown[]).length, 7);
    }
    assertValid([], m);
  });
});

describe('parseIp', () => {
  it('parses IPv4 and IPv6 text forms', () => {
    const v6 = (...groups: number[]) => groups.flatMap((g) => [g >> 8, g & 0xff]);
    const ok: [string, number[]][] = [
      ['0.0.0.0', [0, 0, 0, 0]],
      ['255.255.255.255', [255, 255, 255, 255]],
      ['::', v6(0, 0, 0, 0, 0, 0, 0, 0)],
      ['::1', v6(0, 0, 0, 0, 0, 0, 0, 1)],
      ['1::', v6(1, 0, 0, 0, 0, 0, 0, 0)],
      ['2001:DB8::8:800:200C:417A', v6(0x2001, 0xdb8, 0, 0, 0x8, 0x800, 0x200c, 0x417a)],
      ['1:2:3:4:5:6:7:8', v6(1, 2, 3, 4, 5, 6, 7, 8)],
      ['1:2:3:4:5:6:1.2.3.4', [...v6(1, 2, 3, 4, 5, 6), 1, 2, 3, 4]],
      ['::ffff:10.0.0.1', [...v6(0, 0, 0, 0, 0, 0xffff), 10, 0, 0, 1]],
    ];
    for (const [text, bytes] of ok) assert.deepEqual(parseIp(text), bytes, text);
    const bad = [
      '',
      '1.2.3',
      '1.2.3.4.5',
      '01.2.3.4',
      '1.2.3.-4',
      ':::',
      '1::2::3',
      '1:2:3:4:5:6:7:8:9',
      '1:2:3:4:5:6:7',
      '1:2:3:4:5:6:7:8::',
      '12345::',
      'fe80::1%eth0',
      '1.2.3.4::',
      '::1.2.3.4:5',
      'g::1',
    ];
    for (const text of bad) assert.equal(parseIp(text), null, text);
  });

  it("agrees with node:net's isIP on random strings", () => {
    const pieces = [
      '0',
      '1',
      '9',
      'a',
      'f',
      'g',
      ':',
      '::',
      '.',
      '255',
      '256',
      '01',
      'ffff',
      '12345',
      '1.2.3.4',
    ];
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    let valid = 0;
    for (let i = 0; i < 30_000; i++) {
      let text = '';
      const length = 1 + Math.floor(random() * 12);
      for (let j = 0; j < length; j++) text += pieces[Math.floor(random() * pieces.length)];
      const node = isIP(text) !== 0;
      if (node) valid++;
      assert.equal(parseIp(text) !== null, node, text);
    }
    assert.ok(valid > 300, `only ${valid} valid addresses generated`);
  });
});

describe('reprotect and disk limit', () => {
  it('refuses disks with snapshots, naming each', () => {
    const m = {
      id: 'm-1',
      name: 'web-01',
      disks: [
        { id: 'disk0', sizeBytes: 512, source: 'a', hasSnapshots: false },
        { id: 'disk1', sizeBytes: 512, source: 'b', hasSnapshots: true },
      ],
    };
    assert.deepEqual(validateForReprotect(m), [
      {
        field: 'disks[1]',
        code: 'has_snapshots',
        message: "Disk 'disk1' of machine 'web-01' has snapshots; delete or merge them before reprotect",
      },
    ]);
    assert.deepEqual(validateForReprotect({ ...m, disks: [m.disks[0]!] }), []);
  });

  it('enforces the recovery host disk limit (60 unless configured)', () => {
    const host = { id: 'h-1', name: 'kvm-dr' };
    checkDiskLimit(host, 58, 2);
    checkDiskLimit({ ...host, maxProtectedDisks: 100 }, 90, 10);
    checkDiskLimit(host, 60, 0);
    const cases: [typeof host & { maxProtectedDisks?: number }, number, number, number][] = [
      [host, 58, 3, 60],
      [host, 61, 0, 60],
      [{ ...host, maxProtectedDisks: 4 }, 2, 3, 4],
    ];
    for (const [h, current, adding, limit] of cases) {
      try {
        checkDiskLimit(h, current, adding);
        assert.fail('expected limit_exceeded');
      } catch (error) {
        assert.ok(error instanceof HavenError);
        assert.equal(error.code, 'limit_exceeded');
        assert.equal(
          error.message,
          `Recovery host 'kvm-dr' holds ${current} protected disks; adding ${adding} would exceed its limit of ${limit}`,
        );
        assert.deepEqual(error.details, {
          hostId: 'h-1',
          hostName: 'kvm-dr',
          currentCount: current,
          adding,
          limit,
        });
      }
    }
    assert.throws(() => checkDiskLimit(host, 1, -1), { code: 'bad_request' });
  });

  it('needs the original machine or an alternate location for failback', () => {
    const m = { id: 'm-1', name: 'web-01', originalExists: true };
    assert.deepEqual(validateFailbackTarget(m), []);
    assert.deepEqual(validateFailbackTarget({ ...m, originalExists: false }, 'h-2'), []);
    for (const alternate of [null, '']) {
      const problems = validateFailbackTarget({ ...m, originalExists: false }, alternate);
      assert.deepEqual(
        problems.map((p) => `${p.field}:${p.code}`),
        ['alternateHostId:required'],
      );
      assert.match(problems[0]!.message, /original machine of 'web-01' is gone/);
    }
  });
});
