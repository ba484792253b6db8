import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { isolatedBridge, isolatedNamespace } from '../hypervisor/bridge-networks.ts';
import { sh, shOrThrow, waitForConsole } from '../testing/hypervisor-test.fixture.ts';
import { isolationFixture } from '../testing/isolation-fixture.ts';
import type { NetworkProbeRequest } from './host-services.ts';
import { createNetworkService } from './network-service.ts';

function script(name: string, text: string): NetworkProbeRequest['script'] {
  const content = Buffer.from(text);
  return {
    name,
    contentBase64: content.toString('base64'),
    sha256: createHash('sha256').update(content).digest('hex'),
  };
}

/** Probe namespaces left on the host. */
async function probeNamespaces(): Promise<string[]> {
  return (await shOrThrow('ip', ['netns', 'list']))
    .split('\n')
    .map((line) => line.split(' ')[0]!)
    .filter((name) => name.startsWith('haven-probe-'));
}

/**
 * A drill guest on the isolated test network and a production guest with the
 * same address on the production bridge (as after a test failover), with a
 * production peer: the probe reaches the drill guest's records service, never
 * production, and leaves nothing behind.
 */
describe('network.runProbe: a script inside an isolated test network', {
  skip: process.getuid?.() !== 0 && 'needs root',
}, () => {
  const address = '10.213.78.2';
  const fixture = isolationFixture({ letter: 'r', address });
  const service = createNetworkService({ isolatedBridge });
  const probe = (text: string, more: Partial<NetworkProbeRequest> = {}) =>
    service.runProbe({
      network: fixture.network,
      script: script('check-records', text),
      env: { HAVEN_DRILL_ADDRESS: address, HAVEN_OPERATION: 'drill' },
      timeoutMs: 20_000,
      probeAddress: '10.213.78.254/24',
      ...more,
    });

  async function testNetworkPorts(): Promise<string[]> {
    const ports = JSON.parse(
      await shOrThrow('ip', [
        '-n',
        isolatedNamespace(fixture.network),
        '-j',
        'link',
        'show',
        'master',
        fixture.network,
      ]),
    ) as Array<{ ifname: string }>;
    return ports.map((p) => p.ifname);
  }

  it('runs as an unprivileged user and reaches the drill guest’s records, not production', async () => {
    await fixture.startGuests();
    await fixture.addProdPeer('10.213.78.1/24');
    await fixture.waitForAddress();
    await waitForConsole(fixture.driver, 'drill', /^serving records on port 80$/);
    // The guest has no data disk: its records service says so once it has found none.
    await waitForConsole(fixture.driver, 'drill', /^haven-guest: cannot mount /);
    const drillMac = (await fixture.driver.definition('drill'))!.nics[0]!.mac;
    const prodMac = (await fixture.driver.definition('prod'))!.nics[0]!.mac;
    const portsBefore = await testNetworkPorts();

    const result = await probe(
      [
        '#!/bin/sh',
        'echo "uid=$(id -u) op=$HAVEN_OPERATION home=$HOME"',
        'env | grep -c . | sed "s/^/vars=/"',
        'curl -fsS --max-time 5 "http://$HAVEN_DRILL_ADDRESS/records" || exit 2',
        'ip neigh show "$HAVEN_DRILL_ADDRESS"',
        // A closed port of a reachable host is refused at once (the drill); an unreachable one times out.
        'echo "drill: $(curl -sS --max-time 3 "http://$HAVEN_DRILL_ADDRESS:81/" 2>&1)"',
        'echo "production: $(curl -sS --max-time 3 http://10.213.78.1:81/ 2>&1)"',
        'ip route | sed "s/^/route /"',
      ].join('\n'),
    );
    assert.equal(result.exitCode, 0, result.output);
    assert.equal(result.timedOut, false);
    assert.match(result.output, /^uid=[1-9]\d* op=drill home=\//m);
    assert.notEqual(result.runAs, 'root');
    assert.match(result.output, /^no data disk$/m, 'the drill guest’s records service did not answer');
    assert.ok(result.output.includes(drillMac), `the answer came from another MAC: ${result.output}`);
    assert.ok(!result.output.includes(prodMac), 'the production guest answered the probe');
    assert.match(result.output, /^drill: curl: \(7\)/m, 'a closed port of the drill was not seen');
    assert.doesNotMatch(
      result.output,
      /^production: curl: \(7\) Failed to connect .* after \d+ ms: Couldn't connect/m,
      'the probe reached production',
    );
    assert.match(result.output, /^production: .*(No route to host|timed out)/m);
    assert.doesNotMatch(result.output, /route default/);
    assert.equal(result.probeAddress, '10.213.78.254/24');

    assert.deepEqual(await probeNamespaces(), []);
    assert.deepEqual(await testNetworkPorts(), portsBefore, 'the probe’s veth is still on the test network');
  });

  it('reports a failing script with its output', async () => {
    const result = await probe('#!/bin/sh\necho "record 17 missing" >&2\nexit 4\n');
    assert.equal(result.exitCode, 4);
    assert.equal(result.timedOut, false);
    assert.match(result.output, /record 17 missing/);
    assert.deepEqual(await probeNamespaces(), []);
  });

  it('kills a script at its time limit, with what it left running, and removes the namespace', async () => {
    const started = Date.now();
    // A duration no other test uses: pgrep below must find only what this script started.
    const result = await probe('#!/bin/sh\necho waiting\nsetsid sleep 3471 &\nsleep 3471\n', {
      timeoutMs: 1500,
    });
    assert.equal(result.timedOut, true);
    assert.equal(result.signal, 'SIGKILL');
    assert.match(result.output, /waiting/);
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
    assert.deepEqual(await probeNamespaces(), []);
    assert.equal((await sh('pgrep', ['-f', '^sleep 3471$'])).code, 1, 'a sleep the script started survived');
  });

  it('refuses a network that is not an isolated network here, and a script that does not match its hash', async () => {
    await assert.rejects(probe('#!/bin/sh\n', { network: 'hvnotthere' }), {
      code: 'conflict',
      message: /isolated test network 'hvnotthere' is not running on this host/,
    });
    await assert.rejects(probe('', { script: { ...script('x', '#!/bin/sh\n'), sha256: '0'.repeat(64) } }), {
      code: 'bad_request',
      message: /does not match its sha256/,
    });
    await assert.rejects(probe('#!/bin/sh\n', { probeAddress: '10.213.78.254' }), { code: 'bad_request' });
    assert.deepEqual(await probeNamespaces(), []);
  });
});
