import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { sh, shOrThrow } from '../testing/hypervisor-test.fixture.ts';
import { BridgeNetworks, networkPlacement } from './bridge-networks.ts';

/** Bridges Haven creates on demand, with veth pairs standing in for QEMU's taps. */
describe('bridge networks', () => {
  const tag = randomBytes(2).toString('hex');
  const dirs: string[] = [];
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('creates a missing host bridge, keeps it while used, removes it when unused', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hvbr-'));
    dirs.push(dir);
    const networks = new BridgeNetworks(dir);
    const placement = networkPlacement(`hvb${tag}`, false);
    cleanup.push(() => sh('ip', ['link', 'del', placement.bridge]));
    await networks.prepare(placement);
    assert.match(await shOrThrow('ip', ['-d', 'link', 'show', placement.bridge]), /bridge/);
    await shOrThrow('ip', ['link', 'add', `hvv${tag}a`, 'type', 'veth', 'peer', 'name', `hvv${tag}b`]);
    cleanup.push(() => sh('ip', ['link', 'del', `hvv${tag}a`]));
    await networks.plug(`hvv${tag}a`, placement);
    assert.deepEqual(await networks.ports(placement), [`hvv${tag}a`]);
    await networks.release([placement]);
    assert.equal((await sh('ip', ['link', 'show', placement.bridge])).code, 0, 'removed while in use');
    await shOrThrow('ip', ['link', 'del', `hvv${tag}a`]);
    await networks.release([placement]);
    assert.notEqual((await sh('ip', ['link', 'show', placement.bridge])).code, 0, 'left behind');
    assert.equal(await networks.ports(placement), null);
  });

  it('refuses a network named after an interface that is not a bridge', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hvbr-'));
    dirs.push(dir);
    await shOrThrow('ip', ['link', 'add', `hvd${tag}`, 'type', 'veth', 'peer', 'name', `hve${tag}`]);
    cleanup.push(() => sh('ip', ['link', 'del', `hvd${tag}`]));
    await assert.rejects(new BridgeNetworks(dir).prepare(networkPlacement(`hvd${tag}`, false)), {
      code: 'conflict',
      message: `network 'hvd${tag}' names interface hvd${tag}, which is a veth interface, not a bridge`,
      details: { network: `hvd${tag}`, interface: `hvd${tag}`, kind: 'veth' },
    });
  });
});
