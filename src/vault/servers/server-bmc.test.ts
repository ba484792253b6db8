import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../../clock/index.ts';
import type { Machine } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import { bmcCall } from '../../host/bmc.ts';
import type { BmcAccess, BmcAction } from '../../host/host-services.ts';
import { openStore, type Store } from '../../store/index.ts';
import { type IpmiSimulator, startIpmiSimulator } from '../../testing/ipmi-simulator.fixture.ts';
import { sampleMachine } from '../../testing/sample-machine.ts';
import { SourceFencer } from '../source-fence.ts';
import type { VaultContext } from '../vault-context.ts';
import { fenceServer } from './server-fence.ts';

/**
 * A server's power through a real BMC: OpenIPMI's ipmi_sim over IPMI LAN,
 * its chassis a QEMU process (one guest start), reached by the host's own
 * ipmitool code; the vault's side is real (store, source fencer) and only
 * the control channel to the host is a function call.
 */
describe('a server with a BMC (ipmitool → ipmi_sim → QEMU)', () => {
  let dir: string;
  let sim: IpmiSimulator;
  let store: Store;
  const clock = new ManualClock('2026-12-01T00:10:00.000Z');
  const calls: string[] = [];
  const vault = () =>
    ({
      store,
      clock,
      hosts: {
        isConnected: () => true,
        call: async (_hostId: string, method: string, params: unknown) => {
          calls.push(method === 'servers.bmc' ? `bmc ${(params as { action: BmcAction }).action}` : method);
          if (method === 'servers.bmc') return bmcCall(params as { access: BmcAccess; action: BmcAction });
          return undefined;
        },
      },
    }) as unknown as VaultContext;
  let access: BmcAccess;
  const server = (): Machine =>
    sampleMachine({
      name: 'db-01',
      server: {
        writeBehind: null,
        nbdTimeoutSeconds: 30,
        enrolledAt: '2026-12-01T00:00:00.000Z',
        bmc: {
          protocol: 'ipmi',
          address: access.address,
          port: access.port,
          user: access.user,
          cipherSuite: access.cipherSuite ?? null,
        },
      },
      sourceFence: {
        verified: false,
        hostId: 'h-primary',
        vmName: 'db-01',
        reason: 'the source host is unreachable',
        jobId: 'job-1',
        since: '2026-12-01T00:00:00.000Z',
        attempts: 0,
        lastAttemptAt: null,
      },
    });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'haven-bmc-'));
    sim = await startIpmiSimulator(join(dir, 'bmc'));
    access = sim.access;
    store = await openStore({ dataDir: join(dir, 'vault') });
    await store.machines.create(server());
  });
  after(async () => {
    await sim?.stop();
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('the host sets the next boot to the network, powers the server on, and a soft off reaches it (an OS-less guest ignores it)', async () => {
    assert.deepEqual(await bmcCall({ access, action: 'status' }), { power: 'off' });
    assert.equal(await sim.qemuPid(), null);
    assert.deepEqual(await bmcCall({ access, action: 'boot-pxe' }), { power: 'off' });
    assert.deepEqual(await bmcCall({ access, action: 'power-on' }), { power: 'on' });
    assert.ok(await sim.qemuPid(), 'the QEMU process runs');
    assert.ok((await sim.calls()).includes('boot n'), 'it booted from the network');
    assert.deepEqual(
      await bmcCall({ access, action: 'soft-off' }),
      { power: 'on' },
      'no OS answered the ACPI press',
    );
    assert.ok((await sim.calls()).includes('0x20 set shutdown 1'));
  });

  it('a wrong password or a bad call is refused, naming the BMC and never a password', async () => {
    const wrong = await bmcCall({ access: { ...access, password: 'not-it' }, action: 'status' }).catch(
      (e) => e,
    );
    assert.ok(wrong instanceof HavenError && wrong.code === 'unreachable', String(wrong));
    assert.match(
      wrong.message,
      new RegExp(`IPMI BMC haven@127\\.0\\.0\\.1:${access.port}: 'ipmitool power status' failed`),
    );
    assert.doesNotMatch(wrong.message, /not-it/);
    for (const [params, field] of [
      [{ access: { ...access, address: '-oProxy' }, action: 'status' }, 'access.address'],
      [{ access: { ...access, port: 0 }, action: 'status' }, 'access.port'],
      [{ access, action: 'explode' }, 'action'],
    ] as const) {
      const error = await bmcCall(params as never).catch((e) => e);
      assert.ok(error instanceof HavenError && error.code === 'bad_request', field);
      assert.equal(error.details.field, field);
    }
  });

  it('without its password stored the fence says so and is not verified; the server keeps running', async () => {
    const outcome = await fenceServer(vault(), server(), 'h-primary', 'test');
    assert.equal(outcome.fenced, false);
    assert.match(
      outcome.fenced ? '' : outcome.reason,
      /but powering physical server 'db-01' off through its BMC ipmi:\/\/haven@127\.0\.0\.1:\d+\?cipher=3 through host 'h-primary' failed: .*no password is stored for it; set it with 'haven servers update db-01 --bmc ipmi:\/\/haven@127\.0\.0\.1:\d+\?cipher=3 --bmc-password-file FILE'/,
    );
    assert.ok(await sim.qemuPid());
  });

  it('the vault fences the server when its host is back: legs refused, a hard power off, read back off: verified', async () => {
    await store.serverBmcPasswords.set('m-1', access.password, clock.now().toISOString());
    const pid = await sim.qemuPid();
    assert.ok(pid);
    calls.length = 0;
    const fencer = new SourceFencer(vault, { log: () => {} });
    await fencer.fenceOn('h-primary');
    await fencer.stop();
    assert.deepEqual(calls, ['servers.fence', 'bmc power-off', 'replication.stop']);
    assert.deepEqual((await store.machines.get('m-1'))?.sourceFence, {
      verified: true,
      hostId: 'h-primary',
      vmName: 'db-01',
      state: 'shut-off',
      jobId: 'job-1',
      fencedAt: '2026-12-01T00:10:00.000Z',
      by: 'host-returned',
    });
    assert.equal(
      await sim.qemuPid(),
      null,
      `the guest really stopped (its QEMU process ${pid} is gone or a zombie)`,
    );
    assert.deepEqual(await bmcCall({ access, action: 'status' }), { power: 'off' });
  });
});
