import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitForConsole } from '../testing/hypervisor-test.fixture.ts';
import { isolationFixture } from '../testing/isolation-fixture.ts';
import type { QemuDriver } from './qemu-driver.ts';

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
  const address = '10.213.78.2';
  const prodPeer = '10.213.78.1';
  const testPeer = '10.213.78.9';
  const fixture = isolationFixture({ letter: 'g', address, probe: [prodPeer, testPeer] });

  /** Waits until `name` has printed at least `count` verdicts for `target`. */
  async function waitForProbes(name: string, target: string, count: number, timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const verdicts = await probes(fixture.driver, name, target);
      if (verdicts.length >= count) return verdicts;
      if (Date.now() > deadline) {
        throw new Error(`'${name}' printed ${verdicts.length} of ${count} probes of ${target}`);
      }
      await sleep(100);
    }
  }

  before(async () => {
    // The rest of production (the peer) on the production bridge.
    await fixture.addProdPeer(`${prodPeer}/24`);
  });

  it('P reaches the production peer; its drill copy reaches only the test network, probe after probe', async () => {
    const { driver } = fixture;
    await fixture.startGuests();
    // The isolated network exists once the drill runs; its peer joins it there.
    await fixture.addTestPeer(`${testPeer}/24`);
    await fixture.waitForAddress();

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
