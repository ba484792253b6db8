import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildGuestImage, type GuestImage, guestCommandLine } from '../guest/index.ts';
import {
  type NbdPeer,
  sh,
  shOrThrow,
  startNbdPeer,
  waitForConsole,
} from '../testing/hypervisor-test.fixture.ts';
import { isolatedNamespace } from './bridge-networks.ts';
import type { MachineDefinition } from './hypervisor.ts';
import { QemuDriver } from './qemu-driver.ts';

/**
 * A production guest and its drill copy, with the same static address (as
 * after a test failover), on a production bridge and on the isolated test
 * network of the same name. Two host-side peers, each in its own namespace,
 * stand in for the rest of each network and look at the guests from outside
 * (guest-isolation.test.ts looks from inside, with the guests' own probes).
 */
describe('networks: production bridge and isolated test network', () => {
  const tag = randomBytes(2).toString('hex');
  const network = `hvn${tag}`;
  const prodPeerNs = `hv-pp-${tag}`;
  const testPeerNs = `hv-tp-${tag}`;
  const address = '10.213.77.2';
  let image: GuestImage;
  let dir: string;
  let driver: QemuDriver;
  const peers: NbdPeer[] = [];

  function machine(name: string, isolated: boolean, diskUri: string): MachineDefinition {
    return {
      name,
      cpus: 1,
      memoryMiB: 128,
      disks: [{ diskId: 'disk0', nbdUri: diskUri }],
      nics: [
        {
          network,
          mac: null,
          isolated,
          ip: { mode: 'static', address, prefixLength: 24, gateway: null, dns: [] },
        },
      ],
      // No filesystem on the disk: the guest configures eth0, then idles.
      boot: {
        kernel: image.kernel,
        initrd: image.initramfs,
        cmdline: guestCommandLine({ workload: 'idle' }),
      },
    };
  }

  /** A namespace with one veth end addressed `cidr`; the other end plugged into `bridge` in namespace `bridgeNs`. */
  async function addPeer(ns: string, cidr: string, bridgeNs: string | null, bridge: string, veth: string) {
    await shOrThrow('ip', ['netns', 'add', ns]);
    await shOrThrow('ip', ['link', 'add', `${veth}a`, 'type', 'veth', 'peer', 'name', `${veth}b`]);
    await shOrThrow('ip', ['link', 'set', `${veth}a`, 'netns', ns]);
    await shOrThrow('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', `${veth}a`]);
    await shOrThrow('ip', ['-n', ns, 'link', 'set', `${veth}a`, 'up']);
    if (bridgeNs) await shOrThrow('ip', ['link', 'set', `${veth}b`, 'netns', bridgeNs]);
    const inBridgeNs = bridgeNs ? ['-n', bridgeNs] : [];
    await shOrThrow('ip', [...inBridgeNs, 'link', 'set', `${veth}b`, 'master', bridge, 'up']);
  }

  async function ping(ns: string, target: string, attempts: number): Promise<boolean> {
    for (let i = 0; i < attempts; i++) {
      const result = await sh('ip', ['netns', 'exec', ns, 'busybox', 'ping', '-c', '1', '-W', '1', target]);
      if (result.code === 0) return true;
      await sleep(200);
    }
    return false;
  }

  async function neighbourMac(ns: string, target: string): Promise<string | undefined> {
    const [entry] = JSON.parse(await shOrThrow('ip', ['-n', ns, '-j', 'neigh', 'show', target])) as Array<{
      lladdr?: string;
    }>;
    return entry?.lladdr;
  }

  before(async () => {
    image = await buildGuestImage();
    dir = await mkdtemp(join(tmpdir(), 'hvnet-'));
    driver = new QemuDriver({ stateDir: join(dir, 'state') });
    for (const name of ['prod', 'drill']) {
      peers.push(await startNbdPeer('nbdkit', join(dir, `${name}.sock`), name, ['memory', '1M']));
    }
    // The production bridge is the operator's (it would carry the uplink): Haven uses it, never removes it.
    await shOrThrow('ip', ['link', 'add', 'name', network, 'type', 'bridge']);
    await shOrThrow('ip', ['link', 'set', network, 'up']);
  });
  after(async () => {
    for (const name of ['prod', 'drill']) await driver?.fence({ name }).catch(() => {});
    for (const peer of peers) await peer.stop();
    for (const ns of [prodPeerNs, testPeerNs, isolatedNamespace(network)])
      await sh('ip', ['netns', 'del', ns]);
    await sh('ip', ['link', 'del', network]);
    await rm(dir, { recursive: true, force: true });
  });

  it('the drill copy answers on the test network only; production never sees it', async () => {
    await driver.define({ machine: machine('prod', false, peers[0]!.uri) });
    await driver.define({ machine: machine('drill', true, peers[1]!.uri) });
    await driver.start({ name: 'prod' });
    await driver.start({ name: 'drill' });
    const prodMac = (await driver.definition('prod'))!.nics[0]!.mac;
    const drillMac = (await driver.definition('drill'))!.nics[0]!.mac;

    // The drill's tap is not in the host's namespace at all, and not on the production bridge.
    const prodPorts = JSON.parse(await shOrThrow('ip', ['-j', 'link', 'show', 'master', network])) as Array<{
      ifname: string;
    }>;
    const testPorts = JSON.parse(
      await shOrThrow('ip', ['-n', isolatedNamespace(network), '-j', 'link', 'show', 'master', network]),
    ) as Array<{ ifname: string }>;
    assert.equal(prodPorts.length, 1);
    assert.equal(testPorts.length, 1);
    assert.notEqual(
      (await sh('ip', ['link', 'show', testPorts[0]!.ifname])).code,
      0,
      'drill tap visible from the host namespace',
    );

    await addPeer(prodPeerNs, '10.213.77.1/24', null, network, `hvp${tag}`);
    await addPeer(testPeerNs, '10.213.77.9/24', isolatedNamespace(network), network, `hvt${tag}`);
    await waitForConsole(driver, 'prod', new RegExp(`^ip ${address}/24$`));
    await waitForConsole(driver, 'drill', new RegExp(`^ip ${address}/24$`));

    // Production reaches the production guest, and only it answers for the address.
    assert.ok(await ping(prodPeerNs, address, 30), 'production peer cannot reach the production guest');
    assert.equal(await neighbourMac(prodPeerNs, address), prodMac);
    // The test network works: its peer reaches the drill copy, which answers with its own MAC.
    assert.ok(await ping(testPeerNs, address, 30), 'test peer cannot reach the drill guest');
    assert.equal(await neighbourMac(testPeerNs, address), drillMac);
    // Nothing on the test network reaches production addresses.
    assert.equal(await ping(testPeerNs, '10.213.77.1', 2), false, 'the test network reaches production');
    assert.equal(await neighbourMac(prodPeerNs, address), prodMac, 'the drill answered on production');
  });

  it('powering off releases the isolated network but never the operator’s bridge', async () => {
    // The test peer is plugged into the test network too; the network stays while anything uses it.
    await shOrThrow('ip', ['-n', isolatedNamespace(network), 'link', 'del', `hvt${tag}b`]);
    await shOrThrow('ip', ['netns', 'del', testPeerNs]);
    await driver.powerOff({ name: 'drill' });
    await driver.powerOff({ name: 'prod' });
    assert.equal((await sh('ip', ['netns', 'exec', isolatedNamespace(network), 'true'])).code === 0, false);
    assert.equal((await sh('ip', ['link', 'show', network])).code, 0, 'the production bridge was removed');
  });
});
