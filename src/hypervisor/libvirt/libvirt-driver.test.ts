import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { defineTestDomain, type LibvirtTestDomain } from '../../testing/libvirt-domain.fixture.ts';
import { ensureLibvirtd, type Libvirtd, libvirtMissing } from '../../testing/libvirtd.fixture.ts';
import { until } from '../../testing/until.ts';
import { findQemuProcesses } from '../qemu-process.ts';
import { parseDomainXml } from './domain-xml.ts';
import { LibvirtDriver } from './libvirt-driver.ts';

const run = promisify(execFile);
const skip = await libvirtMissing();

/**
 * The libvirt driver against a real libvirtd (QEMU under TCG): a domain an
 * operator defined (qcow2 disk, bridge NIC, file console) through inventory,
 * start, console, shutdown, start and a verified fence. Steps share the domain.
 */
describe('libvirt driver with a real libvirtd', { skip }, () => {
  let libvirtd: Libvirtd;
  let domain: LibvirtTestDomain;
  let driver: LibvirtDriver;
  const name = `haven-test-${process.pid}`;

  before(async () => {
    libvirtd = await ensureLibvirtd();
    domain = await defineTestDomain(libvirtd.uri, name);
    driver = new LibvirtDriver({ uri: libvirtd.uri });
  });
  after(async () => {
    await domain?.remove();
    await libvirtd?.stop();
  });

  it('lists the domain in the inventory: qcow2 disk with its virtual size, NIC, CPUs, memory, kernel boot', async () => {
    const { driver: kind, uri, domains } = await driver.inventory({ name });
    assert.equal(kind, 'libvirt');
    assert.equal(uri, libvirtd.uri);
    assert.equal(domains.length, 1);
    const described = domains[0]!;
    assert.equal(described.state, 'shut-off');
    assert.equal(described.cpus, 1);
    assert.equal(described.memoryMiB, 128);
    assert.match(described.uuid ?? '', /^[0-9a-f-]{36}$/);
    assert.deepEqual(described.disks, [
      {
        target: 'vda',
        bus: 'virtio',
        device: 'disk',
        source: { type: 'file', path: domain.image },
        format: 'qcow2',
        virtualSizeBytes: domain.diskBytes,
        snapshots: 0,
        readOnly: false,
      },
    ]);
    assert.deepEqual(described.nics, [
      { mac: domain.mac, network: domain.bridge, type: 'bridge', model: 'virtio' },
    ]);
    assert.equal(described.boot.kind, 'kernel');
    assert.equal(described.consoleFile, domain.consoleFile);
    assert.ok((await driver.list()).some((m) => m.name === name && m.state === 'shut-off'));
    assert.deepEqual(await driver.status({ name: 'haven-no-such-domain' }), {
      name: 'haven-no-such-domain',
      state: 'absent',
    });
    assert.deepEqual((await driver.inventory({ name: 'haven-no-such-domain' })).domains, []);
    await assert.rejects(driver.start({ name: 'haven-no-such-domain' }), {
      code: 'not_found',
      message: "machine 'haven-no-such-domain' does not exist",
    });
  });

  it('starts it; the console shows the guest booting; the running image is still described', async () => {
    assert.deepEqual(await driver.start({ name }), { name, state: 'running' });
    await until('the guest mounting its qcow2 disk', async () =>
      (await driver.consoleLog({ name })).lines.some((line) => line.includes('mounted /data')),
    );
    const running = (await driver.inventory({ name })).domains[0]!;
    assert.equal(running.state, 'running');
    // The running QEMU holds the image's write lock: -U still reads its size.
    assert.equal(running.disks[0]!.virtualSizeBytes, domain.diskBytes);
    assert.deepEqual(await driver.consoleLog({ name, tail: 1 }).then((log) => log.lines.length), 1);
  });

  it('shuts it down cleanly (ACPI), starts it again, and fences it: verified stopped, autostart off', async () => {
    const shutdown = await driver.shutdown({ name, timeoutSeconds: 60 });
    assert.equal(shutdown.outcome, 'powered-down');
    assert.equal(shutdown.state, 'shut-off');
    assert.ok((await driver.consoleLog({ name })).lines.some((line) => line.includes('powered off cleanly')));
    assert.equal((await driver.shutdown({ name, timeoutSeconds: 1 })).outcome, 'already-off');

    await run('virsh', ['-c', libvirtd.uri, 'autostart', name]);
    assert.equal((await driver.start({ name })).state, 'running');
    await until('the guest booting again', async () =>
      (await driver.consoleLog({ name })).lines.some((line) => line.includes('mounted /data')),
    );
    assert.equal((await findQemuProcesses(`guest=${name},`)).length, 1);
    assert.deepEqual(await driver.fence({ name }), { name, state: 'shut-off' });
    assert.deepEqual(await findQemuProcesses(`guest=${name},`), []);
    const { stdout } = await run('virsh', ['-c', libvirtd.uri, 'dominfo', name]);
    assert.match(stdout, /Autostart:\s+disable/);
    // Fencing what is off or not defined is a verified no-op.
    assert.deepEqual(await driver.fence({ name }), { name, state: 'shut-off' });
    assert.deepEqual(await driver.fence({ name: 'haven-no-such-domain' }), {
      name: 'haven-no-such-domain',
      state: 'absent',
    });
  });

  it('defines a Haven machine (NBD disk, bridge NIC, file console) that libvirt accepts, and undefines it', async () => {
    const machineName = `${name}-nbd`;
    try {
      await driver.define({
        machine: {
          name: machineName,
          cpus: 2,
          memoryMiB: 256,
          disks: [{ diskId: 'disk0', nbdUri: 'nbd+unix:///m.disk0?socket=/run/haven-test/nbd.sock' }],
          nics: [{ network: domain.bridge, mac: null }],
          boot: { kernel: '/boot/vmlinuz', initrd: null, cmdline: 'console=ttyS0' },
        },
      });
      const { stdout } = await run('virsh', ['-c', libvirtd.uri, 'dumpxml', machineName]);
      const stored = parseDomainXml(stdout);
      assert.equal(stored.cpus, 2);
      assert.equal(stored.memoryMiB, 256);
      assert.deepEqual(stored.disks[0]!.source, {
        type: 'nbd',
        export: 'm.disk0',
        socket: '/run/haven-test/nbd.sock',
        host: null,
        port: null,
      });
      assert.equal(stored.nics[0]!.network, domain.bridge);
      assert.equal(stored.consoleFile, `/var/log/libvirt/qemu/${machineName}-console.log`);
      assert.match(stdout, /<domain type='qemu'/);
      await driver.undefine({ name: machineName });
      assert.equal((await driver.status({ name: machineName })).state, 'absent');
    } finally {
      await run('virsh', ['-c', libvirtd.uri, 'undefine', machineName]).catch(() => {});
      await rm(`/var/log/libvirt/qemu/${machineName}.log`, { force: true });
    }
  });
});
