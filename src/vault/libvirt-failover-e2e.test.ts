import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { copyGuestBoot } from '../app/demo-machine.ts';
import { type Embedded, startEmbedded } from '../app/start-embedded.ts';
import type { Host, Job, Machine, RecoveryPoint } from '../domain/model.ts';
import { formatDataDisk, guestCommandLine } from '../guest/index.ts';
import { parseDomainXml } from '../hypervisor/libvirt/domain-xml.ts';
import { lookupShareGroup } from '../storage/share-group.ts';
import { embeddedApi, runOperation } from '../testing/embedded-api.ts';
import { consoleOf as guestConsole, records } from '../testing/guest-console.ts';
import { reachableFolder } from '../testing/libvirt-domain.fixture.ts';
import { ensureLibvirtd, type Libvirtd, libvirtMissing } from '../testing/libvirtd.fixture.ts';
import { until as waitUntil } from '../testing/until.ts';

const run = promisify(execFile);
const skip = await libvirtMissing();

/**
 * `haven up --libvirt`: both sites on one real libvirtd (QEMU under TCG). A
 * machine Haven runs there (the test guest writing records to its disk
 * through the disk service) is protected and fails over into a libvirt
 * domain at the recovery host, beside its fenced source: a name, UUID and
 * MAC of its own, booting from the view over NBD. Commit moves its disk,
 * live, onto a local qcow2 and closes the view; the guest keeps writing.
 */
describe('failover into libvirt and commit off the view', { skip }, () => {
  let libvirtd: Libvirtd;
  let dir: string;
  let store: string;
  let up: Embedded;
  let machine: Machine;
  const api = embeddedApi(() => up);
  const suffix = randomBytes(3).toString('hex');
  const name = `haven-lf-${suffix}`;
  const bridge = `hvlf${suffix}`;
  const recoveryBridge = `hvlr${suffix}`;
  const sourceMac = '52:54:00:aa:bb:02';
  const until = <T>(what: string, probe: () => Promise<T | undefined | false>) =>
    waitUntil(what, probe, { timeoutMs: 120_000 });
  const virsh = async (...args: string[]) => (await run('virsh', ['-c', libvirtd.uri, ...args])).stdout;
  const consoleOf = (hostId: string, vmName: string) => guestConsole(up.vault.context, hostId, vmName);
  const operate = async (operation: string, body: unknown): Promise<Job> => {
    const job = await runOperation(api, machine.id, operation, body, 180_000);
    machine = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
    return job;
  };

  before(async () => {
    libvirtd = await ensureLibvirtd();
    await run('ip', ['link', 'add', bridge, 'type', 'bridge']);
    await run('ip', ['link', 'add', recoveryBridge, 'type', 'bridge']);
    dir = await mkdtemp(join(tmpdir(), 'haven-lf-'));
    // A storage folder libvirt's QEMU can reach (kernel, initrd, disk, the local images): 0755, ours.
    store = await reachableFolder('haven-lf-store-');
    up = await startEmbedded({
      dataDir: dir,
      port: 0,
      demo: false,
      libvirt: { uri: libvirtd.uri },
      shareGroup: await lookupShareGroup('libvirt-qemu'),
      storageFolders: [store],
      senderPollMs: 25,
      monitorIntervalMs: 500,
    });
    await until('both hosts to connect on libvirt', async () => {
      const { body } = await api<{ hosts: Host[] }>('GET', '/hosts');
      return (
        body.hosts.length === 2 && body.hosts.every((h) => h.capabilities.includes('hypervisor:libvirt'))
      );
    });
    const mapped = await api('PATCH', '/sites/primary', { networkMapping: { [bridge]: recoveryBridge } });
    assert.equal(mapped.status, 200, JSON.stringify(mapped.body));
    const boot = await copyGuestBoot(store);
    const disk = join(store, `${name}.img`);
    await formatDataDisk(disk, { sizeBytes: 32 << 20 });
    const created = await api<Machine>('POST', '/machines', {
      name,
      hostId: 'primary',
      disks: [{ id: 'disk0', sizeBytes: 32 << 20, source: disk }],
      recoverySettings: {
        targetName: name,
        cpus: 1,
        memoryMiB: 128,
        nics: [{ network: bridge, recoveryNetwork: null, mac: sourceMac, ip: { mode: 'dhcp' } }],
        boot: { ...boot, cmdline: guestCommandLine({ workload: 'records', rate: 5 }) },
      },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    machine = created.body;
    const started = await api('POST', `/machines/${machine.id}/start`, {});
    assert.equal(started.status, 200, JSON.stringify(started.body));
  });

  after(async () => {
    await up?.stop();
    const names = [name, machine?.runtime.failover?.vmName].filter((n) => n !== undefined);
    for (const domain of new Set(names)) {
      await run('virsh', ['-c', libvirtd.uri, 'destroy', domain]).catch(() => {});
      await run('virsh', ['-c', libvirtd.uri, 'undefine', domain]).catch(() => {});
      await rm(`/var/log/libvirt/qemu/${domain}.log`, { force: true });
      await rm(`/var/log/libvirt/qemu/${domain}-console.log`, { force: true });
    }
    await run('ip', ['link', 'del', bridge]).catch(() => {});
    await run('ip', ['link', 'del', recoveryBridge]).catch(() => {});
    if (dir) await rm(dir, { recursive: true, force: true });
    if (store) await rm(store, { recursive: true, force: true });
    await libvirtd?.stop();
  });

  it('fails over into a libvirt domain of its own beside the fenced source, booting from the view', async () => {
    await until(
      'the source guest to write records',
      async () => records(await consoleOf(machine.primaryHostId, name)).durable >= 3,
    );
    await operate('enable-replication', { recoveryHostId: 'recovery', policyId: 'default' });
    assert.equal(machine.state, 'protected');
    await until('a processed recovery point', async () => {
      const { body } = await api<{ recoveryPoints: RecoveryPoint[] }>(
        'GET',
        `/machines/${machine.id}/recovery-points`,
      );
      return body.recoveryPoints.some((p) => p.processed);
    });
    await operate('failover', { recoveryPoint: { option: 'latest-processed' }, shutdownSource: false });
    assert.equal(machine.state, 'failed-over');
    const copy = machine.runtime.failover!;
    assert.notEqual(copy.vmName, name, 'the source domain keeps its name on the shared libvirtd');
    const source = parseDomainXml(await virsh('dumpxml', name));
    const recovered = parseDomainXml(await virsh('dumpxml', copy.vmName));
    assert.equal((await virsh('domstate', name)).trim(), 'shut off', 'the source is fenced, still defined');
    assert.equal((await virsh('domstate', copy.vmName)).trim(), 'running');
    assert.notEqual(recovered.uuid, source.uuid);
    assert.equal(source.nics[0]!.mac, sourceMac);
    assert.notEqual(recovered.nics[0]!.mac, sourceMac);
    assert.equal(recovered.nics[0]!.network, recoveryBridge, "the recovery site's network mapping");
    assert.equal(recovered.disks[0]!.source.type, 'nbd', 'it boots from the view over NBD');
    const lines = await until('the recovered guest to recover its records', async () => {
      const l = await consoleOf(copy.hostId, copy.vmName);
      return records(l).recovered !== null ? l : undefined;
    });
    assert.ok(lines.some((l) => l.includes('haven-guest booted')));
  });

  it('a commit that cannot move the disk fails, saying the machine still runs on its view', async () => {
    const copy = machine.runtime.failover!;
    // A folder every local user may write to: someone could swap the image under the hypervisor.
    await chmod(store, 0o777);
    try {
      const started = await api<Job>('POST', `/machines/${machine.id}/commit`, {});
      assert.equal(started.status, 202, JSON.stringify(started.body));
      const job = await until('the commit to fail', async () => {
        const { body } = await api<Job>('GET', `/jobs/${started.body.id}`);
        return body.state === 'failed' ? body : undefined;
      });
      assert.match(job.error?.message ?? '', /writable by every user/);
      assert.match(job.error?.message ?? '', new RegExp(`still runs, disk disk0 on view ${copy.viewId}`));
    } finally {
      await chmod(store, 0o755);
    }
    machine = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
    assert.equal(machine.state, 'failed-over');
    assert.equal(parseDomainXml(await virsh('dumpxml', copy.vmName)).disks[0]!.source.type, 'nbd');
  });

  it('commit moves the disk, live, onto a local qcow2 and closes the view; the guest keeps writing', async () => {
    const copy = machine.runtime.failover!;
    const job = await operate('commit', {});
    assert.equal(machine.state, 'failover-committed');
    const moved = machine.runtime.failover!;
    assert.equal(moved.viewClosed, true);
    const image = moved.localImages?.[0]?.image ?? '';
    assert.ok(image.startsWith(`${store}/`) && image.endsWith('.qcow2'), image);
    assert.match(String(job.output.view), /closed/);
    const move = job.steps.find((s) => s.name === 'move-disks-off-view');
    assert.match(String(move?.message), /^1 disk\(s\), 3\d\.\d MiB copied, on local images$/);
    const blk = await virsh('domblklist', copy.vmName, '--details');
    assert.match(blk, new RegExp(`file\\s+disk\\s+vda\\s+${image.replace(/[.]/g, '\\.')}`));
    // A restart reads the image too, never the closed view.
    const stored = parseDomainXml(await virsh('dumpxml', '--inactive', copy.vmName));
    assert.deepEqual(stored.disks[0]!.source, { type: 'file', path: image });
    await assert.rejects(
      up.vault.context.hosts.call(copy.hostId, 'replica.viewInfo', { viewId: copy.viewId }),
      /is not open on this host/,
    );
    const before = records(await consoleOf(copy.hostId, copy.vmName)).durable;
    await until('the guest to write more records on its local image', async () => {
      return records(await consoleOf(copy.hostId, copy.vmName)).durable >= before + 5;
    });
    await virsh('destroy', copy.vmName);
    const check = await run('qemu-img', ['check', '-f', 'qcow2', image]);
    assert.match(check.stdout, /No errors were found/);
  });
});
