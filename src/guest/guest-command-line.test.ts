import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HavenError } from '../errors/index.ts';
import { qemuArguments } from './boot-guest.ts';
import { guestCommandLine } from './guest-command-line.ts';

describe('guest command line', () => {
  it('carries the workload settings as haven.* words after the console', () => {
    assert.equal(
      guestCommandLine(
        {
          workload: 'records',
          rate: 20,
          batch: 5,
          ip: { address: '10.0.0.5/24', gateway: '10.0.0.1' },
          probe: ['10.0.0.1', '10.0.0.9'],
        },
        ['loglevel=7'],
      ),
      'console=ttyS0 panic=-1 quiet haven.workload=records haven.rate=20 haven.batch=5 haven.ip=10.0.0.5/24,10.0.0.1 haven.probe=10.0.0.1,10.0.0.9 loglevel=7',
    );
    assert.equal(guestCommandLine(), 'console=ttyS0 panic=-1 quiet');
    assert.equal(
      guestCommandLine({ workload: 'bench', bench: { fileMiB: 16, latencySamples: 32 } }),
      'console=ttyS0 panic=-1 quiet haven.workload=bench haven.bench=16,32',
    );
  });

  it('refuses settings the guest would misread', () => {
    for (const bad of [
      () => guestCommandLine({ rate: 0 }),
      () => guestCommandLine({ batch: 1.5 }),
      () => guestCommandLine({ bench: { fileMiB: 0, latencySamples: 8 } }),
      () => guestCommandLine({ bench: { fileMiB: 8, latencySamples: 2.5 } }),
      () => guestCommandLine({ ip: { address: '10.0.0.5' } }),
      () => guestCommandLine({ ip: { address: '10.0.0.5/24', gateway: 'router' } }),
      () => guestCommandLine({ probe: [] }),
      () => guestCommandLine({ probe: ['10.0.0.1', 'gateway'] }),
      () => guestCommandLine({}, ['two words']),
    ]) {
      assert.throws(bad, (error: HavenError) => error.code === 'validation_failed');
    }
  });

  it('attaches the disk as virtio, from a file or an NBD export', () => {
    const base = { kernel: '/k', initramfs: '/i' };
    const fileArgs = qemuArguments({ ...base, disk: { file: '/tmp/d.img' } });
    assert.equal(fileArgs[fileArgs.indexOf('-drive') + 1], 'file=/tmp/d.img,format=raw,if=virtio');
    const nbdArgs = qemuArguments({ ...base, disk: { nbdUri: 'nbd+unix:///d0?socket=/run/d.sock' } });
    assert.equal(
      nbdArgs[nbdArgs.indexOf('-drive') + 1],
      'file=nbd+unix:///d0?socket=/run/d.sock,format=raw,if=virtio',
    );
    assert.deepEqual(qemuArguments({ ...base, memoryMiB: 256 }).slice(4, 8), [
      '-m',
      '256M',
      '-nodefaults',
      '-no-user-config',
    ]);
    assert.throws(() => qemuArguments({ ...base, disk: { file: '/tmp/a,b.img' } }), HavenError);
  });
});
