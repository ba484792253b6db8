import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sh, shOrThrow } from '../testing/hypervisor-test.fixture.ts';
import { isolationFixture } from '../testing/isolation-fixture.ts';
import { isolatedNamespace } from './bridge-networks.ts';

/**
 * A production guest and its drill copy, with the same static address (as
 * after a test failover), on a production bridge and on the isolated test
 * network of the same name. Two host-side peers, each in its own namespace,
 * stand in for the rest of each network and look at the guests from outside
 * (guest-isolation.test.ts looks from inside, with the guests' own probes).
 */
describe('networks: production bridge and isolated test network', () => {
  const address = '10.213.77.2';
  const fixture = isolationFixture({ letter: 'n', address });
  const { network, prodPeerNs, testPeerNs } = fixture;

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

  it('the drill copy answers on the test network only; production never sees it', async () => {
    const { driver } = fixture;
    await fixture.startGuests();
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

    await fixture.addProdPeer('10.213.77.1/24');
    await fixture.addTestPeer('10.213.77.9/24');
    await fixture.waitForAddress();

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
    await shOrThrow('ip', ['-n', isolatedNamespace(network), 'link', 'del', `${fixture.testVeth}b`]);
    await shOrThrow('ip', ['netns', 'del', testPeerNs]);
    await fixture.driver.powerOff({ name: 'drill' });
    await fixture.driver.powerOff({ name: 'prod' });
    assert.equal((await sh('ip', ['netns', 'exec', isolatedNamespace(network), 'true'])).code === 0, false);
    assert.equal((await sh('ip', ['link', 'show', network])).code, 0, 'the production bridge was removed');
  });
});
