/**
 * A drill (test failover) of a libvirt domain an operator runs, protected
 * live through its mirror, on a real libvirtd (QEMU under TCG), both sites
 * on it (`haven up --libvirt` in process). The drill domain gets its own
 * name, UUID and MAC, boots from a writable view of the point, and its NIC is
 * on an isolated libvirt network: no forward, a bridge of its own, no host
 * address; the guest, with its source's address, cannot reach the host's
 * address on the production bridge that its source reaches. The source runs
 * on, protected. Cleanup removes the domain, its network and the view.
 * Debian: libvirt-daemon-system, qemu-system-x86, qemu-utils, busybox.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type Embedded, startEmbedded } from '../app/start-embedded.ts';
import type { Job, Machine } from '../domain/model.ts';
import { guestCommandLine } from '../guest/index.ts';
import { parseDomainXml } from '../hypervisor/libvirt/domain-xml.ts';
import { isolatedNetworkName, parseNetworkXml } from '../hypervisor/libvirt/libvirt-isolated-networks.ts';
import { findQemuProcesses } from '../hypervisor/qemu-process.ts';
import { lookupShareGroup } from '../storage/share-group.ts';
import { embeddedApi, runOperation } from '../testing/embedded-api.ts';
import { records } from '../testing/guest-console.ts';
import {
  defineTestDomain,
  importTestDomain,
  type LibvirtTestDomain,
  reachableFolder,
} from '../testing/libvirt-domain.fixture.ts';
import { ensureLibvirtd, type Libvirtd, libvirtMissing } from '../testing/libvirtd.fixture.ts';
import { until as waitUntil } from '../testing/until.ts';

const run = promisify(execFile);
const skip = await libvirtMissing();

describe('drill of a live-protected libvirt domain on an isolated network', { skip }, () => {
  let libvirtd: Libvirtd;
  let domain: LibvirtTestDomain;
  let dir: string;
  let store: string;
  let up: Embedded | undefined;
  let machine: Machine;
  let qemuPid: number;
  let drill: { vmName: string; viewId: string; hostId: string } | undefined;
  const api = embeddedApi(() => up!);
  const suffix = randomBytes(3).toString('hex');
  const name = `haven-ld-${suffix}`;
  const testNetwork = `hvd${suffix}`;
  const libvirtNetwork = isolatedNetworkName(testNetwork);
  const peerNs = `hv-ldp-${suffix}`;
  const peerVeth = `hldp${suffix}`;
  // The guest's address (its drill copy keeps it) and the host's own address on the production bridge.
  const guestAddress = '10.213.93.2';
  const hostAddress = '10.213.93.1';
  const until = <T>(what: string, probe: () => Promise<T | undefined | false>) =>
    waitUntil(what, probe, { timeoutMs: 120_000, intervalMs: 250 });
  const virsh = async (...args: string[]) => (await run('virsh', ['-c', libvirtd.uri, ...args])).stdout;
  const lines = async (file: string) => (await readFile(file, 'utf8').catch(() => '')).split(/\r?\n/);
  const drillConsole = (vmName: string) => `/var/log/libvirt/qemu/${vmName}-console.log`;
  const operate = async (operation: string, body: unknown): Promise<Job> => {
    const job = await runOperation(api, machine.id, operation, body, 180_000);
    machine = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
    return job;
  };
  /** Healthy, the mirror armed, and a point cut after `since`. */
  const protectedSince = (since: number) =>
    until('the source to be healthy, its mirror armed, with a new point', async () => {
      const m = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
      const last = m.replication?.mirror?.lastPointAt;
      return m.health === 'healthy' &&
        m.replication?.mirror?.state === 'armed' &&
        last &&
        Date.parse(last) > since
        ? m
        : undefined;
    });

  before(async () => {
    libvirtd = await ensureLibvirtd();
    domain = await defineTestDomain(libvirtd.uri, name, {
      guest: { rate: 5, ip: { address: `${guestAddress}/24` }, probe: [hostAddress] },
    });
    // The production bridge (no uplink) with an address of the host's: the source reaches it.
    await run('ip', ['addr', 'add', `${hostAddress}/24`, 'dev', domain.bridge]);
    await run('ip', ['link', 'set', domain.bridge, 'up']);
    await virsh('start', name);
    dir = await mkdtemp(join(tmpdir(), 'haven-ld-'));
    store = await reachableFolder('haven-ld-store-');
    up = await startEmbedded({
      dataDir: dir,
      port: 0,
      demo: false,
      libvirt: { uri: libvirtd.uri },
      shareGroup: await lookupShareGroup('libvirt-qemu'),
      // The domain's own folder: its kernel and initrd boot the drill copy too.
      storageFolders: [store, domain.dir],
      senderPollMs: 25,
      monitorIntervalMs: 500,
    });
  });

  after(async () => {
    await up?.stop();
    await run('ip', ['netns', 'del', peerNs]).catch(() => {});
    await run('ip', ['link', 'del', peerVeth]).catch(() => {});
    if (drill) {
      await run('virsh', ['-c', libvirtd.uri, 'destroy', drill.vmName]).catch(() => {});
      await run('virsh', ['-c', libvirtd.uri, 'undefine', drill.vmName]).catch(() => {});
      await rm(`/var/log/libvirt/qemu/${drill.vmName}.log`, { force: true });
      await rm(drillConsole(drill.vmName), { force: true });
    }
    await run('virsh', ['-c', libvirtd.uri, 'net-destroy', libvirtNetwork]).catch(() => {});
    await run('virsh', ['-c', libvirtd.uri, 'net-undefine', libvirtNetwork]).catch(() => {});
    await domain?.remove();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (store) await rm(store, { recursive: true, force: true });
    await libvirtd?.stop();
  });

  it('starts the drill domain of its own from the point on an isolated network; the source runs on, protected', async () => {
    await until(
      'the source guest to write records',
      async () => records(await lines(domain.consoleFile)).durable >= 3,
    );
    await until('the source to reach the host on the production bridge', async () =>
      (await lines(domain.consoleFile)).includes(`probe ${hostAddress} reachable`),
    );
    [qemuPid] = (await findQemuProcesses(`guest=${name},`)) as [number];
    // A machine is ready for a drill only with its networks mapped at the recovery site.
    machine = await importTestDomain(api, domain);
    // The copy's address travels in its NIC's settings, not in its kernel command line (as an operator sets it).
    const settings = await api<Machine>('PATCH', `/machines/${machine.id}/recovery-settings`, {
      boot: {
        ...machine.recoverySettings.boot,
        cmdline: guestCommandLine({ rate: 5, probe: [hostAddress] }),
      },
      nics: [
        {
          ...machine.recoverySettings.nics[0],
          ip: { mode: 'static', address: guestAddress, prefixLength: 24, gateway: null, dns: [] },
        },
      ],
    });
    assert.equal(settings.status, 200, JSON.stringify(settings.body));
    machine = settings.body;
    await operate('enable-replication', { recoveryHostId: 'recovery', policyId: 'default' });
    await protectedSince(0);

    const started = Date.now();
    const job = await operate('test-failover', {
      recoveryPoint: { option: 'latest-processed' },
      network: testNetwork,
    });
    assert.equal(machine.state, 'test-failover-active');
    const copy = machine.runtime.test!;
    drill = copy;
    assert.deepEqual(job.output.drill, {
      vmName: copy.vmName,
      network: testNetwork,
      hostId: machine.recoveryHostId,
    });

    // A domain of its own, booting from the view.
    assert.notEqual(copy.vmName, name);
    const source = parseDomainXml(await virsh('dumpxml', name));
    const copied = parseDomainXml(await virsh('dumpxml', copy.vmName));
    assert.equal((await virsh('domstate', copy.vmName)).trim(), 'running');
    assert.notEqual(copied.uuid, source.uuid);
    assert.notEqual(copied.nics[0]!.mac, domain.mac);
    assert.equal(copied.disks[0]!.source.type, 'nbd', 'it boots from the writable view over NBD');
    assert.deepEqual(copied.nics[0], {
      mac: copied.nics[0]!.mac,
      network: libvirtNetwork,
      type: 'network',
      model: 'virtio',
    });

    // The isolated network: no forward, no address, a bridge of its own sealed off from the host.
    const network = parseNetworkXml(await virsh('net-dumpxml', libvirtNetwork));
    assert.equal(network.forward, null);
    assert.equal(network.addresses, 0);
    assert.ok(network.bridge && network.bridge !== domain.bridge, `bridge ${network.bridge}`);
    const bridge = network.bridge;
    const [link] = JSON.parse((await run('ip', ['-j', 'addr', 'show', 'dev', bridge])).stdout) as Array<{
      addr_info: unknown[];
    }>;
    assert.deepEqual(link?.addr_info, [], 'the host has no address on the drill network');
    const sysctl = async (key: string) => (await readFile(`/proc/sys/net/${key}`, 'utf8')).trim();
    assert.equal(await sysctl(`ipv4/conf/${bridge}/arp_ignore`), '8');
    assert.equal(await sysctl(`ipv4/conf/${bridge}/rp_filter`), '1');

    // The drill boots from the point (its records check out) and cannot reach the host's production address.
    const drillLines = await until('the drill guest to check its records and probe', async () => {
      const l = await lines(drillConsole(copy.vmName));
      return records(l).recovered !== null && l.includes(`probe ${hostAddress} unreachable`) ? l : undefined;
    });
    assert.ok(!drillLines.includes(`probe ${hostAddress} reachable`), 'the drill reached production');

    // A peer on the drill network sees the drill machine, and gets no ARP answer for the host's address.
    await run('ip', ['netns', 'add', peerNs]);
    await run('ip', ['link', 'add', peerVeth, 'type', 'veth', 'peer', 'name', `${peerVeth}b`]);
    await run('ip', ['link', 'set', `${peerVeth}b`, 'netns', peerNs]);
    await run('ip', ['link', 'set', peerVeth, 'master', bridge, 'up']);
    await run('ip', ['-n', peerNs, 'addr', 'add', '10.213.93.9/24', 'dev', `${peerVeth}b`]);
    await run('ip', ['-n', peerNs, 'link', 'set', `${peerVeth}b`, 'up']);
    const ping = (target: string) =>
      run('ip', ['netns', 'exec', peerNs, 'busybox', 'ping', '-c', '1', '-W', '1', target]).then(
        () => true,
        () => false,
      );
    await until('the peer to reach the drill machine', () => ping(guestAddress));
    const [neighbour] = JSON.parse(
      (await run('ip', ['-n', peerNs, '-j', 'neigh', 'show', guestAddress])).stdout,
    ) as Array<{ lladdr?: string }>;
    assert.equal(neighbour?.lladdr, copied.nics[0]!.mac, 'the drill machine answers on its network');
    assert.equal(await ping(hostAddress), false);
    assert.equal(await ping(hostAddress), false);
    const [host] = JSON.parse(
      (await run('ip', ['-n', peerNs, '-j', 'neigh', 'show', hostAddress])).stdout,
    ) as Array<{ lladdr?: string }>;
    assert.equal(host?.lladdr, undefined, 'the host answered ARP on the drill network');
    await run('ip', ['netns', 'del', peerNs]);

    // The source: the same QEMU, still writing, still reaching production, protected with new points.
    assert.deepEqual(await findQemuProcesses(`guest=${name},`), [qemuPid]);
    assert.equal((await virsh('domstate', name)).trim(), 'running');
    const written = records(await lines(domain.consoleFile)).durable;
    await protectedSince(started);
    await until(
      'the source to write on',
      async () => records(await lines(domain.consoleFile)).durable > written,
    );
  });

  it('cleanup removes the drill domain, its isolated network and the view; the source stays protected', async () => {
    const copy = drill!;
    const { bridge } = parseNetworkXml(await virsh('net-dumpxml', libvirtNetwork));
    const since = Date.now();
    const job = await operate('cleanup-test-failover', { notes: 'drill on the isolated network' });
    assert.equal(machine.state, 'protected');
    assert.equal(machine.runtime.test, null);
    assert.equal(job.output.notes, 'drill on the isolated network');
    await assert.rejects(virsh('domstate', copy.vmName), /failed to get domain|not found/i);
    await assert.rejects(virsh('net-info', libvirtNetwork), /failed to get network|not found/i);
    await assert.rejects(run('ip', ['link', 'show', bridge!]), /does not exist/);
    await assert.rejects(
      up!.vault.context.hosts.call(copy.hostId, 'replica.viewInfo', { viewId: copy.viewId }),
      /is not open on this host/,
    );
    drill = undefined;
    assert.deepEqual(await findQemuProcesses(`guest=${name},`), [qemuPid]);
    await protectedSince(since);
  });
});
