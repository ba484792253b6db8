/**
 * The vault's steps of a failback onto a physical server, against the host's
 * real side of its servers (ServerLinks: the agent's reports parsed and
 * judged, fencing, the recovery environment's request) with its disk service,
 * replica store and the environment's build as doubles: what the steps ask
 * of the host, the refusals, and the words shown while the server comes back.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { systemClock } from '../../clock/index.ts';
import type { Machine, ServerLegState } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { DiskExport, HostServices } from '../../host/host-services.ts';
import { ServerLinks } from '../../host/server-links.ts';
import type { RecoveryEnvironmentOptions } from '../../server-agent/recovery-environment.ts';
import { startIpmiSimulator } from '../../testing/ipmi-simulator.fixture.ts';
import { until } from '../../testing/until.ts';
import type { LifecycleStepContext } from './lifecycle-job.ts';
import {
  awaitServerBack,
  leaveServerOff,
  prepareServerFailback,
  restoreStagingImages,
} from './server-failback.ts';

const MACHINE = 'srv-1';
/** What the vault's table holds for the server's BMC (the test with a BMC sets it). */
let bmcPassword: string | undefined;
const MiB = 1 << 20;

interface Leg {
  md: ServerLegState['md'];
  connected: boolean;
  pointsAllowed: boolean;
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-server-failback-'));
});
after(() => rm(dir, { recursive: true, force: true }));

/** The primary host's servers service (real) with the legs of one disk, and a step context around it. */
async function setup() {
  const leg: Leg = { md: 'in-sync', connected: true, pointsAllowed: true };
  const built: RecoveryEnvironmentOptions[] = [];
  const links = await ServerLinks.open({
    dataDir: await mkdtemp(join(dir, 'host-')),
    endpoint: {
      address: '10.0.1.11',
      nbdPort: 10809,
      agentPort: 10810,
      tlsHostname: 'primary',
      caCertPem: 'CA',
    },
    ca: { signClient: async () => 'CERT' },
    core: {
      list: () =>
        [
          {
            name: `${MACHINE}.disk0`,
            sizeBytes: 64 * MiB,
            serverLeg: { ...leg, syncedBytes: null },
          },
        ] as never,
      journalStatus: () => ({ lastWriteAt: null }) as never,
      confirmServerLeg: async () => {},
      disconnectServer: async () => {
        leg.connected = false;
      },
    },
    disks: { attach: async () => ({}) as never, detach: async () => {}, list: async () => [] },
    redeemEnrolment: async () => {
      throw new Error('not in this test');
    },
    reportIntervalSeconds: 10,
    buildRecoveryEnvironment: async (options, into) => {
      built.push(options);
      return {
        kernel: join(into, 'vmlinuz'),
        initramfs: join(into, 'initramfs.gz'),
        cmdline: 'console=ttyS0',
        ipxeScript: join(into, 'boot.ipxe'),
        syslinuxConfig: join(into, 'syslinux.cfg'),
        disks: options.disks.map((d) => ({
          device: d.device,
          ranges: [...d.ranges],
          rangeBytes: d.ranges.reduce((n, r) => n + r.length, 0),
        })),
        rangeBytes: options.disks.flatMap((d) => d.ranges).reduce((n, r) => n + r.length, 0),
        image: { cached: true } as never,
      };
    },
  });
  const calls: string[] = [];
  const staging = `/var/lib/haven/servers/${MACHINE}/disk0.img`;
  let consolidated: Array<{ offset: number; length: number }> | null = [{ offset: 4096, length: 8192 }];
  const exportOf = (): DiskExport => ({
    machineId: MACHINE,
    diskId: 'disk0',
    nbdUri: 'nbd+unix:///srv-1.disk0',
    sizeBytes: 64 * MiB,
    source: '/dev/vda',
    stagingImage: staging,
    pendingBytes: 0,
  });
  const host = {
    disk: {
      list: async () => [exportOf()],
      attach: async (params: unknown) => {
        calls.push(`disk.attach ${JSON.stringify(params)}`);
        return exportOf();
      },
    },
    replication: {
      stop: async () => {
        calls.push('replication.stop');
      },
    },
    replica: {
      consolidate: async (params: unknown) => {
        calls.push(`replica.consolidate ${JSON.stringify(params)}`);
        return { machineId: MACHINE, disks: [{ diskId: 'disk0', writtenRegions: consolidated }] };
      },
    },
    servers: links,
  } as unknown as HostServices;
  let machine = {
    id: MACHINE,
    name: 'web-01',
    primaryHostId: 'primary',
    activeHostId: 'recovery',
    server: { writeBehind: null, nbdTimeoutSeconds: 5, enrolledAt: '2026-01-01T00:00:00Z' },
    disks: [
      { id: 'disk0', source: '/dev/vda', serverDevice: '/dev/vda', sizeBytes: 64 * MiB, hasSnapshots: false },
    ],
  } as unknown as Machine;
  let output: Record<string, unknown> = {};
  const progress: string[] = [];
  const fences: Array<string | null> = [];
  const vault = {
    clock: systemClock,
    hosts: {
      isConnected: () => true,
      call: async (_hostId: string, method: string, params: never) => {
        const [service, operation] = method.split('.') as [string, string];
        assert.equal(service, 'servers');
        return (links as unknown as Record<string, (p: never) => Promise<unknown>>)[operation]!(params);
      },
    },
    store: {
      hosts: { get: async (id: string) => ({ id, name: id }) },
      jobs: { get: async () => ({ output }) },
      machines: {
        recordSourceFence: async (_id: string, fence: unknown) => {
          fences.push(fence === null ? null : 'set');
        },
      },
      alerts: { clear: async () => {} },
      serverBmcPasswords: { get: async () => bmcPassword },
    },
  };
  const ctx = {
    vault,
    job: { id: 'job-1' },
    get machine() {
      return machine;
    },
    host: () => host,
    signal: new AbortController().signal,
    progress: (percent: number, message?: string) => progress.push(`${Math.round(percent)} ${message}`),
    output: async (patch: Record<string, unknown>) => {
      output = { ...output, ...patch };
    },
    save: async (patch: Partial<Machine>) => {
      machine = { ...machine, ...patch };
      return machine;
    },
  } as unknown as LifecycleStepContext;
  return {
    links,
    leg,
    built,
    calls,
    ctx,
    progress,
    fences,
    staging,
    output: () => output,
    machine: () => machine,
    consolidateAnswers: (regions: typeof consolidated) => {
      consolidated = regions;
    },
  };
}

const ownReport = (legs: string, action: string) =>
  `hostname web-01\nversion 1\nstate running\ndisk disk0 /dev/md0 ${legs} ${action} - 0\n`;
const envReport = (phase: string, copied: number, total: number, why = '') =>
  `hostname (none)\nversion 1\nstate failback\nfailback ${phase} ${copied} ${total} 42 ${why}\n`;

describe('failback onto a physical server: the vault’s steps', () => {
  it('reprotect refuses a server its host sees running, naming it and what to do; an off one is fenced and its staging images recorded', async () => {
    const t = await setup();
    t.links.report(MACHINE, ownReport('[UU]', 'idle'));
    await assert.rejects(leaveServerOff(t.ctx), (error: unknown) => {
      assert.ok(error instanceof HavenError);
      assert.equal(error.code, 'conflict');
      assert.match(
        error.message,
        /^physical server 'web-01' is not off at the primary site: its host sees its NBD leg disk0 connected and its agent reporting \(in-sync\)\. .*power the server off/,
      );
      return true;
    });
    assert.deepEqual(t.calls, [], 'nothing done');

    // Powered off: its legs close; the last report said it was stopping.
    t.links.report(MACHINE, ownReport('[UU]', 'idle').replace('running', 'stopping'));
    t.leg.connected = false;
    await leaveServerOff(t.ctx);
    assert.deepEqual(t.calls, ['replication.stop']);
    assert.match(
      t.links.refusalOf(MACHINE)?.message ?? '',
      /failed over: this server must stay off \(reprotect by job job-1\)/,
    );
    assert.equal(t.machine().disks[0]?.serverStagingImage, t.staging);
  });

  it('failback: consolidates into the staging images and keeps the ranges written, attaches the legs with a fresh journal', async () => {
    const t = await setup();
    await t.ctx.save({ disks: t.machine().disks.map((d) => ({ ...d, serverStagingImage: t.staging })) });
    await restoreStagingImages(t.ctx);
    assert.deepEqual(t.calls, [
      `replica.consolidate {"machineId":"${MACHINE}","restore":[{"diskId":"disk0","imagePath":"${t.staging}","keepMdMetadata":true}]}`,
      `disk.attach {"machineId":"${MACHINE}","diskId":"disk0","source":"/dev/vda","sizeBytes":${64 * MiB},"serverLeg":true,"resetJournal":true}`,
    ]);
    assert.deepEqual(t.output().serverFailback, { regions: { disk0: [{ offset: 4096, length: 8192 }] } });
    // Retried after it was consolidated: the host no longer knows, the job does.
    t.consolidateAnswers(null);
    await restoreStagingImages(t.ctx);
    assert.deepEqual(t.output().serverFailback, { regions: { disk0: [{ offset: 4096, length: 8192 }] } });
  });

  it('builds the recovery environment from the server’s own identity and those ranges, lets the server in, then waits for the copy and its legs in sync', async () => {
    const t = await setup();
    await t.links.fence({ machineId: MACHINE, reason: 'failed over' });
    t.leg.connected = false;
    await t.ctx.output({ serverFailback: { regions: { disk0: [{ offset: 0, length: 65536 }] } } });
    await prepareServerFailback(t.ctx);
    const [env] = t.built;
    assert.deepEqual(env?.identity, { machineId: MACHINE, stateDir: '/etc/haven' });
    assert.equal(env?.export.client, undefined, 'no key leaves the server');
    assert.deepEqual(env?.disks, [
      {
        device: '/dev/vda',
        array: '/dev/md0',
        exportName: `${MACHINE}.disk0`,
        ranges: [{ offset: 0, length: 65536 }],
      },
    ]);
    assert.equal(t.links.refusalOf(MACHINE), null, 'unfenced');
    assert.deepEqual(t.fences, [null]);

    const waiting = awaitServerBack(t.ctx);
    const shown = (pattern: RegExp) =>
      new Promise<void>((resolve, reject) => {
        const timer = setInterval(() => {
          if (t.progress.some((p) => pattern.test(p))) {
            clearInterval(timer);
            resolve();
          }
        }, 20);
        setTimeout(() => {
          clearInterval(timer);
          reject(new Error(`never shown: ${pattern}; shown: ${t.progress.join(' | ')}`));
        }, 10_000);
      });
    await shown(
      /^5 waiting: boot server 'web-01' once from Haven's recovery environment: network boot from .*failback \(iPXE script .*boot\.ipxe/,
    );
    t.leg.connected = true;
    t.links.report(MACHINE, envReport('copying', 16384, 65536));
    await shown(/the recovery environment copies onto the server: 16384 of 65536 bytes/);
    assert.match((await t.links.status({ machineId: MACHINE })).problem ?? '', /copied 16384 of 65536/);
    t.links.report(MACHINE, envReport('done', 65536, 65536));
    await shown(/^60 the recovery environment wrote 65536 bytes in 42 ms/);
    // The server's own system: the stale leg comes back through md's bitmap.
    t.leg.md = 'recovering';
    t.links.report(MACHINE, ownReport('[U_]', 'recovery'));
    await shown(/^80 the server runs its own system again/);
    assert.notEqual((await t.links.status({ machineId: MACHINE })).state, 'in-sync');
    t.leg.md = 'in-sync';
    t.links.report(MACHINE, ownReport('[UU]', 'idle'));
    await waiting;
    assert.deepEqual(
      { ...(t.output().serverBack as object), at: undefined },
      { copiedBytes: 65536, copyMs: 42, at: undefined },
    );
  });

  it('with a BMC (ipmi_sim, its chassis a QEMU process), Haven boots the server from the network itself, then its next boot is disk again', async () => {
    const sim = await startIpmiSimulator(join(dir, 'bmc'));
    try {
      const { password, ...bmc } = sim.access;
      bmcPassword = password;
      const t = await setup();
      await t.ctx.save({ server: { ...t.machine().server!, bmc } });
      await t.ctx.output({ serverFailback: { regions: { disk0: [{ offset: 0, length: 65536 }] } } });
      await prepareServerFailback(t.ctx);
      const waiting = awaitServerBack(t.ctx);
      await until('the server powered on through its BMC', async () => t.output().bmcBoot);
      assert.ok((await sim.calls()).includes('boot n'), 'from the network');
      assert.ok(await sim.qemuPid(), 'the server runs');
      assert.match(
        String(t.output().bmcBoot),
        /next boot set to the network and powered on through its BMC \(it reports it on\)/,
      );
      await until('the progress to say so', async () =>
        t.progress.some((p) =>
          /^5 waiting: server 'web-01': next boot set to the network and powered on through its BMC .*waiting for Haven's recovery environment/.test(
            p,
          ),
        ),
      );
      t.leg.connected = true;
      t.links.report(MACHINE, envReport('done', 65536, 65536));
      await until('the next boot back to disk', async () => t.output().bmcOwnBoot);
      assert.ok(
        (await sim.calls()).some((c) => /^0x20 set boot (?!pxe)/.test(c)),
        (await sim.calls()).join('\n'),
      );
      t.links.report(MACHINE, ownReport('[UU]', 'idle'));
      await waiting;
      assert.deepEqual(
        (await sim.calls()).filter((c) => c.startsWith('boot ')),
        ['boot n'],
        'powered on once',
      );
    } finally {
      bmcPassword = undefined;
      await sim.stop();
    }
  });

  it('refuses a server that booted its own system instead, and says why a recovery environment failed', async () => {
    const t = await setup();
    await t.ctx.output({ serverFailback: { regions: { disk0: null } } });
    await prepareServerFailback(t.ctx);
    assert.deepEqual(
      t.built[0]?.disks[0]?.ranges,
      [{ offset: 0, length: 64 * MiB }],
      'unknown: the whole disk',
    );
    t.links.report(MACHINE, ownReport('[UU]', 'idle'));
    await assert.rejects(
      awaitServerBack(t.ctx),
      /physical server 'web-01' booted its own system before Haven's recovery environment wrote the failback: .*Power it off now/,
    );

    await prepareServerFailback(t.ctx);
    t.links.report(MACHINE, envReport('failed', 0, 65536, 'cannot assemble /dev/md0'));
    await assert.rejects(
      awaitServerBack(t.ctx),
      /the recovery environment on server 'web-01' failed: cannot assemble \/dev\/md0\. /,
    );
  });
});
