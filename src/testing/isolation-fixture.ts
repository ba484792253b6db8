/**
 * The set-up shared by the network isolation tests: a production guest and
 * its drill copy with the same static address (as after a test failover), on
 * an operator's production bridge and on the isolated test network of the
 * same name, plus host-side peers standing in for the rest of each network.
 * Not exported from index.ts.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { buildGuestImage, type GuestImage, guestCommandLine } from '../guest/index.ts';
import { isolatedNamespace } from '../hypervisor/bridge-networks.ts';
import type { MachineDefinition } from '../hypervisor/hypervisor.ts';
import { QemuDriver } from '../hypervisor/qemu-driver.ts';
import { type NbdPeer, sh, shOrThrow, startNbdPeer, waitForConsole } from './hypervisor-test.fixture.ts';

export interface IsolationFixtureOptions {
  /** One letter in every bridge, namespace and veth name, so suites running at once do not collide. */
  letter: string;
  /** The static address both guests configure. */
  address: string;
  /** Addresses the guests ping over and over, printing a verdict on their console each time. */
  probe?: string[];
}

export interface IsolationFixture {
  /** The production bridge, and the name of the isolated test network. */
  readonly network: string;
  readonly prodPeerNs: string;
  readonly testPeerNs: string;
  /** The test peer's veth; the end plugged into the test network is this plus `b`. */
  readonly testVeth: string;
  /** Set by the suite's before hook. */
  readonly driver: QemuDriver;
  /** The production peer: namespace `prodPeerNs` answering pings at `cidr`, on the production bridge. */
  addProdPeer(cidr: string): Promise<void>;
  /** The test peer, in `testPeerNs` on the isolated network (which exists once the drill runs). */
  addTestPeer(cidr: string): Promise<void>;
  /** Defines and starts `prod` on the production bridge and `drill` on the isolated network. */
  startGuests(): Promise<void>;
  /** Waits until both guests have configured the address. */
  waitForAddress(): Promise<void>;
}

/**
 * Registers the suite's before and after hooks (call it inside `describe`):
 * before builds the guest image, starts a disk for each guest and creates the
 * production bridge; after fences the guests and removes everything made.
 */
export function isolationFixture(options: IsolationFixtureOptions): IsolationFixture {
  const tag = randomBytes(2).toString('hex');
  const { letter, address } = options;
  const network = `hv${letter}${tag}`;
  const prodPeerNs = `hv-${letter}p-${tag}`;
  const testPeerNs = `hv-${letter}t-${tag}`;
  let image: GuestImage;
  let dir: string;
  let driver: QemuDriver | undefined;
  const disks: NbdPeer[] = [];
  const prodVeth = `h${letter}p${tag}`;
  const testVeth = `h${letter}t${tag}`;

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
      // No filesystem on the disk: the guest configures eth0, probes if asked, and idles.
      boot: {
        kernel: image.kernel,
        initrd: image.initramfs,
        cmdline: guestCommandLine({ workload: 'idle', ...(options.probe ? { probe: options.probe } : {}) }),
      },
    };
  }

  /** A namespace answering pings at `cidr`, its veth plugged into the bridge (in `bridgeNs`, or the host's). */
  async function addPeer(ns: string, cidr: string, bridgeNs: string | null, veth: string) {
    await shOrThrow('ip', ['netns', 'add', ns]);
    await shOrThrow('ip', ['link', 'add', `${veth}a`, 'type', 'veth', 'peer', 'name', `${veth}b`]);
    await shOrThrow('ip', ['link', 'set', `${veth}a`, 'netns', ns]);
    await shOrThrow('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', `${veth}a`]);
    await shOrThrow('ip', ['-n', ns, 'link', 'set', `${veth}a`, 'up']);
    if (bridgeNs) await shOrThrow('ip', ['link', 'set', `${veth}b`, 'netns', bridgeNs]);
    const inBridgeNs = bridgeNs ? ['-n', bridgeNs] : [];
    await shOrThrow('ip', [...inBridgeNs, 'link', 'set', `${veth}b`, 'master', network, 'up']);
  }

  before(async () => {
    image = await buildGuestImage();
    dir = await mkdtemp(join(tmpdir(), `hv${letter}iso-`));
    driver = new QemuDriver({ stateDir: join(dir, 'state') });
    for (const name of ['prod', 'drill']) {
      disks.push(await startNbdPeer('nbdkit', join(dir, `${name}.sock`), name, ['memory', '1M']));
    }
    // The production bridge is the operator's (it would carry the uplink): Haven uses it, never removes it.
    await shOrThrow('ip', ['link', 'add', 'name', network, 'type', 'bridge']);
    await shOrThrow('ip', ['link', 'set', network, 'up']);
  });
  after(async () => {
    for (const name of ['prod', 'drill']) await driver?.fence({ name }).catch(() => {});
    for (const disk of disks) await disk.stop();
    for (const ns of [prodPeerNs, testPeerNs, isolatedNamespace(network)])
      await sh('ip', ['netns', 'del', ns]);
    await sh('ip', ['link', 'del', network]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  return {
    network,
    prodPeerNs,
    testPeerNs,
    testVeth,
    get driver() {
      if (!driver) throw new Error('the isolation fixture is used before its before hook ran');
      return driver;
    },
    addProdPeer: (cidr) => addPeer(prodPeerNs, cidr, null, prodVeth),
    addTestPeer: (cidr) => addPeer(testPeerNs, cidr, isolatedNamespace(network), testVeth),
    async startGuests() {
      await this.driver.define({ machine: machine('prod', false, disks[0]!.uri) });
      await this.driver.define({ machine: machine('drill', true, disks[1]!.uri) });
      await this.driver.start({ name: 'prod' });
      await this.driver.start({ name: 'drill' });
    },
    async waitForAddress() {
      await waitForConsole(this.driver, 'prod', new RegExp(`^ip ${address}/24$`));
      await waitForConsole(this.driver, 'drill', new RegExp(`^ip ${address}/24$`));
    },
  };
}
