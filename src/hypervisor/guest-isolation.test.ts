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

/** Probe verdicts a guest printed for `target`, in console order. */
async function probes(driver: QemuDriver, name: string, target: string): Promise<boolean[]> {
  const { lines } = await driver.consoleLog({ name });
  const verdict = new RegExp(`^probe ${target.replaceAll('.', '\\.')} (reachable|unreachable)$`);
  return lines.flatMap((line) => {
    const match = line.match(verdict);
    return match ? [match[1] === 'reachable'] : [];
  });
}

/**
 * The drill, seen from inside the guests: a production guest P and its drill
 * copy (same static address, same probes, as after a test failover) each ping
 * a peer on production and a peer on the test network. The test-network peer
 * proves the drill's network works, so its failures to reach production mean
 * isolation, not a dead NIC.
 */
describe('real guests: a drill copy cannot reach production', () => {
  const tag = randomBytes(2).toString('hex');
  const network = `hvg${tag}`;
  const prodPeerNs = `hv-gp-${tag}`;
  const testPeerNs = `hv-gt-${tag}`;
  const address = '10.213.78.2';
  const prodPeer = '10.213.78.1';
  const testPeer = '10.213.78.9';
  let image: GuestImage;
  let dir: string;
  let driver: QemuDriver;
  const disks: NbdPeer[] = [];

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
      // No filesystem on the disk: the guest configures eth0, probes, and idles.
      boot: {
        kernel: image.kernel,
        initrd: image.initramfs,
        cmdline: guestCommandLine({ workload: 'idle', probe: [prodPeer, testPeer] }),
      },
    };
  }

  /** A namespace answering pings at `cidr`, its veth plugged into `bridge` (in `bridgeNs`, or the host's). */
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

  /** Waits until `name` has printed at least `count` verdicts for `target`. */
  async function waitForProbes(name: string, target: string, count: number, timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const verdicts = await probes(driver, name, target);
      if (verdicts.length >= count) return verdicts;
      if (Date.now() > deadline) {
        throw new Error(`'${name}' printed ${verdicts.length} of ${count} probes of ${target}`);
      }
      await sleep(100);
    }
  }

  before(async () => {
    image = await buildGuestImage();
    dir = await mkdtemp(join(tmpdir(), 'hvgiso-'));
    driver = new QemuDriver({ stateDir: join(dir, 'state') });
    for (const name of ['prod', 'drill']) {
      disks.push(await startNbdPeer('nbdkit', join(dir, `${name}.sock`), name, ['memory', '1M']));
    }
    // The operator's production bridge, with the rest of production (the peer) on it.
    await shOrThrow('ip', ['link', 'add', 'name', network, 'type', 'bridge']);
    await shOrThrow('ip', ['link', 'set', network, 'up']);
    await addPeer(prodPeerNs, `${prodPeer}/24`, null, `hgp${tag}`);
  });
  after(async () => {
    for (const name of ['prod', 'drill']) await driver?.fence({ name }).catch(() => {});
    for (const disk of disks) await disk.stop();
    for (const ns of [prodPeerNs, testPeerNs, isolatedNamespace(network)])
      await sh('ip', ['netns', 'del', ns]);
    await sh('ip', ['link', 'del', network]);
    await rm(dir, { recursive: true, force: true });
  });

  it('P reaches the production peer; its drill copy reaches only the test network, probe after probe', async () => {
    await driver.define({ machine: machine('prod', false, disks[0]!.uri) });
    await driver.define({ machine: machine('drill', true, disks[1]!.uri) });
    await driver.start({ name: 'prod' });
    await driver.start({ name: 'drill' });
    // The isolated network exists once the drill runs; its peer joins it there.
    await addPeer(testPeerNs, `${testPeer}/24`, isolatedNamespace(network), `hgt${tag}`);
    await waitForConsole(driver, 'prod', new RegExp(`^ip ${address}/24$`));
    await waitForConsole(driver, 'drill', new RegExp(`^ip ${address}/24$`));

    // From the drill's first success on the test network, its NIC demonstrably works.
    await waitForConsole(driver, 'drill', new RegExp(`^probe ${testPeer.replaceAll('.', '\\.')} reachable$`));
    await waitForConsole(driver, 'prod', new RegExp(`^probe ${prodPeer.replaceAll('.', '\\.')} reachable$`));
    const drillStart = (await probes(driver, 'drill', prodPeer)).length;
    const prodStart = (await probes(driver, 'prod', prodPeer)).length;
    const rounds = 5;
    await waitForProbes('drill', prodPeer, drillStart + rounds);
    await waitForProbes('prod', prodPeer, prodStart + rounds);

    const drillToProd = await probes(driver, 'drill', prodPeer);
    const drillToTest = await probes(driver, 'drill', testPeer);
    const prodToProd = await probes(driver, 'prod', prodPeer);
    const prodToTest = await probes(driver, 'prod', testPeer);
    console.log(
      `probe results: drill->production peer ${count(drillToProd)}, drill->test peer ${count(drillToTest)}, ` +
        `P->production peer ${count(prodToProd)}, P->test peer ${count(prodToTest)}`,
    );
    // The drill copy never reached production, not even once, from boot on.
    assert.equal(drillToProd.filter(Boolean).length, 0, 'the drill copy reached the production peer');
    assert.ok(drillToProd.length >= rounds);
    // Meanwhile it kept reaching its own test network, and P kept reaching production.
    const sinceJoined = drillToTest.slice(drillToTest.indexOf(true));
    assert.ok(
      sinceJoined.length >= rounds && sinceJoined.every(Boolean),
      'the drill copy lost the test network',
    );
    assert.ok(prodToProd.slice(prodStart).every(Boolean), 'P lost the production peer during the drill');
    // And production never reaches into the test network.
    assert.equal(prodToTest.filter(Boolean).length, 0, 'P reached the test network');
  });
});

function count(verdicts: boolean[]): string {
  const reachable = verdicts.filter(Boolean).length;
  return `${reachable} reachable / ${verdicts.length - reachable} unreachable`;
}
