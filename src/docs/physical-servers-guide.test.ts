/**
 * docs/physical-servers.md, run as an operator would: each line of its ```sh
 * blocks, in order, in a directory laid out like the clone, with `haven up`
 * in the background; and a QEMU guest playing the physical server between
 * them — its own BIOS-bootable disk, the Debian kernel with nbd.ko and md
 * raid1, nbd-client, mdadm, openssl and the server agent, a workload writing
 * checksummed records. The server reaches the primary host through QEMU's
 * user network (10.0.2.2 is this machine), across two proxies that play the
 * network between them, so the link can be cut.
 *
 * The one end-to-end scenario of physical servers (its guest boots are the
 * issue's CI share): onboarding, initial replication (md's resync), the link
 * cut under writes (the mirror degrades, Haven says not protected, only what
 * changed is resent), power loss (kill -9), failover as a VM at the recovery
 * site with every durable record and clean filesystems, failback onto the
 * server, then a planned failover and failback as a VM of the primary host.
 * Debian: qemu-system-x86, e2fsprogs, nbd-client's and mdadm's packages (apt).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Machine } from '../domain/model.ts';
import { checkDiskFilesystems } from '../filesystem/index.ts';
import {
  bootGuest,
  buildGuestImage,
  buildServerBootDisk,
  copyServerBootDisk,
  type GuestHandle,
  SERVER_BOOT_DISK,
} from '../guest/index.ts';
import { collectOutput, freePort } from '../testing/child-process.ts';
import { type BackgroundUp, type CloneShell, cloneShell, shellBlocks } from '../testing/clone-shell.ts';
import { Link } from '../testing/link-proxy.ts';
import { GUEST_IP, HOST_FROM_GUEST, MiB, NIC } from '../testing/server-site.ts';
import { until } from '../testing/until.ts';

const WAIT_MS = 120_000;
const NAME = 'web-01';

describe('docs/physical-servers.md, every command, with a guest playing the server', () => {
  let shell: CloneShell;
  let work: string;
  let up: BackgroundUp | null = null;
  const links: Link[] = [];
  let server: GuestHandle | null = null;

  const shOk = (line: string) => shell.shOk(line);
  const show = async (): Promise<Machine> => JSON.parse(await shOk(`haven machines show ${NAME} --json`));

  before(async () => {
    shell = await cloneShell('haven-servers-guide-');
    work = await mkdtemp(join(tmpdir(), 'haven-servers-guide-work-'));
  });

  after(async () => {
    if (server) {
      server.kill();
      await server.exited;
    }
    await up?.stop();
    for (const link of links) await link.close();
    await shell?.remove();
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** `haven up …` as typed in a first terminal (see CloneShell.startUp). */
  async function startUp(line: string): Promise<void> {
    up = await shell.startUp(line, { timeoutMs: 90_000 });
  }

  /** Waits for a console line of the server; a failure shows what the server printed last. */
  async function serverLine(pattern: RegExp, from?: number): Promise<RegExpMatchArray> {
    const guest = server!;
    try {
      return await guest.waitForLine(pattern, WAIT_MS, from);
    } catch (error) {
      throw new Error(
        `${(error as Error).message}\nthe server's console, last lines:\n${[
          ...guest
            .lines()
            .filter((l) => !/^(durable|tput) /.test(l))
            .slice(0, 60),
          '...',
          ...guest.lines().slice(-10),
        ].join('\n')}\nhaven up:\n${up?.output().slice(-3000)}`,
      );
    }
  }

  /** The last `durable <n>` the server printed. */
  const lastDurable = (guest: GuestHandle) =>
    Math.max(
      0,
      ...guest
        .lines()
        .map((l) => /^durable (\d+)$/.exec(l)?.[1])
        .filter((n) => n !== undefined)
        .map(Number),
    );

  /** The record the machine's VM reports it found intact when it booted (its console); a corrupt record fails. */
  async function recoveredRecord(what: string): Promise<number> {
    const found = await until(
      what,
      async () => {
        const console = await shOk(`haven console ${NAME} --tail 400`);
        return /^(recovered (\d+) ok|corrupt at .*)$/m.exec(console) ?? undefined;
      },
      { timeoutMs: WAIT_MS },
    );
    assert.ok(found[2] !== undefined, found[0]);
    return Number(found[2]);
  }

  /** Waits for the machine's VM to make a record past `record` durable; the last one it did. */
  const vmDurableAfter = (record: number): Promise<number> =>
    until(
      'the VM to write records',
      async () => {
        const console = await shOk(`haven console ${NAME} --tail 400`);
        const last = Math.max(0, ...[...console.matchAll(/^durable (\d+)$/gm)].map((m) => Number(m[1])));
        return last > record ? last : undefined;
      },
      { timeoutMs: WAIT_MS },
    );

  it('onboards a server, protects it, rides out a cut link, fails it over as a VM after a power loss, fails back onto the server itself and protects it again; then retires it: planned failover, failback as a VM', async () => {
    const [image, sections] = await Promise.all([
      buildGuestImage({ variant: 'server' }),
      shellBlocks('docs/physical-servers.md'),
    ]);
    const bootDisk = await buildServerBootDisk(image);
    assert.ok(sections.length >= 4, `found ${sections.length} sh blocks`);
    const [start, add, protect, failover, failback, forward, ...rest] = sections as [
      string[],
      string[],
      string[],
      string[],
      string[],
      string[],
      ...string[][],
    ];

    // 1. Haven, its primary host listening for servers on ports of this test, told to servers through the proxies.
    assert.equal(start.length, 1);
    assert.match(start[0]!, /^haven up --server-listen \S+ --no-demo$/);
    const [nbdPort, agentPort] = [await freePort(), await freePort()];
    const nbdLink = await Link.open(nbdPort);
    const agentLink = await Link.open(agentPort);
    links.push(nbdLink, agentLink);
    await startUp(
      `${start[0]!.replace(
        /--server-listen \S+/,
        `--server-listen 127.0.0.1:${nbdPort}:${agentPort} --server-advertise ${HOST_FROM_GUEST}:${nbdLink.port}:${agentLink.port}`,
      )} --port ${await freePort()} --control-port ${await freePort()}`,
    );
    await until('both hosts to connect', async () => {
      const hosts = JSON.parse(await shOk('haven hosts list --json')) as Array<{ status: string }>;
      return hosts.length === 2 && hosts.every((h) => h.status === 'connected');
    });

    // 2. Add the server: what `servers add` prints is what the operator runs on the server.
    let printed = '';
    for (const line of add) {
      const out = await shOk(line);
      if (line.startsWith('haven servers add')) printed = out;
    }
    assert.match(printed, new RegExp(`server ${NAME} added \\(unprotected`));
    const commands = printed.slice(printed.indexOf('run on the server, as root:'));
    const enrol = /^haven-server-agent enrol .*$/m.exec(commands)?.[0];
    assert.ok(enrol, printed);
    assert.ok(enrol.includes(`--agent ${HOST_FROM_GUEST}:${agentLink.port}`), enrol);
    // The guest's init runs `setup` and `run` at every boot, as the page says a server should.
    const onboarding = commands
      .split('\n')
      .slice(1)
      .filter((l) => !/^haven-server-agent (setup|run)$/.test(l))
      .join('\n');
    const disk = join(work, 'server.img');
    await copyServerBootDisk(bootDisk, disk, {
      guest: { rate: 10, ip: GUEST_IP },
      files: { '/etc/haven-onboard': `${onboarding}\n` },
    });
    server = bootGuest({ bootFromDisk: true, disk: { file: disk }, qemuArgs: NIC });
    await serverLine(/^server: enrolled$/);
    await serverLine(/^md: created raid1 metadata 1\.0 on \/dev\/vda/);

    // 3. Protect it: the job waits for md's resync (the initial replication), the first point and the boot check.
    for (const line of protect) await shOk(line);
    // The drill booted a point as a VM on the test network and checked its filesystems (crashed: replayed first).
    const [drill] = JSON.parse(await shOk('haven drills list --json')) as Array<{
      id: string;
      state: string;
    }>;
    assert.equal(drill?.state, 'passed', JSON.stringify(drill));
    const shownDrill = JSON.parse(await shOk(`haven drills show ${drill.id} --json`)) as {
      machines: Array<{ checks: Array<{ kind: string; result: string }> }>;
    };
    const drillChecks = shownDrill.machines[0]?.checks ?? [];
    for (const kind of ['boot', 'filesystems']) {
      const found = drillChecks.find((c) => c.kind === kind);
      assert.equal(found?.result, 'passed', JSON.stringify(drillChecks));
    }
    let machine = await show();
    assert.equal(machine.state, 'protected');
    assert.equal(machine.server?.enrolledAt !== null, true);
    const healthy = await until(
      'the server to be shown healthy',
      async () => {
        const m = await show();
        return m.health === 'healthy' && m.replication?.server?.state === 'in-sync' ? m : undefined;
      },
      { timeoutMs: 60_000 },
    );
    assert.match(healthy.replication?.server?.agent?.disks[0]?.legs ?? '', /^\[UU\]$/);
    const jobs = JSON.parse(await shOk('haven jobs list --json')) as Array<{ id: string; kind: string }>;
    const enableJob = jobs.find((j) => j.kind === 'enable-replication');
    assert.ok(enableJob, JSON.stringify(jobs));
    const shown = JSON.parse(await shOk(`haven jobs show ${enableJob.id} --json`)) as {
      output: Record<string, unknown>;
    };
    const bootCheck = shown.output.vmBootCheck as { bootable: boolean } | undefined;
    assert.equal(bootCheck?.bootable, true, JSON.stringify(bootCheck));

    // The link cut for a while under writes: the server goes on alone, Haven says it is not protected.
    const before = lastDurable(server);
    const sentBefore = machine.replication?.sentBytes ?? 0;
    nbdLink.cut();
    agentLink.cut();
    const cutAt = server.lines().length;
    await serverLine(/^md: active raid1 \[U_\]$/, cutAt);
    const notProtected = await until(
      'Haven to show the server not protected',
      async () => {
        const m = await show();
        return m.health !== 'healthy' && m.replication?.server?.state !== 'in-sync' ? m : undefined;
      },
      { timeoutMs: 60_000 },
    );
    assert.notEqual(notProtected.health, 'healthy');
    await serverLine(/^durable \d+$/, server.lines().length);
    await serverLine(/^durable \d+$/, server.lines().length);
    assert.ok(lastDurable(server) > before, 'records went on while the link was cut');
    machine = await show();
    const sentAtRestore = machine.replication?.sentBytes ?? 0;
    nbdLink.restore();
    agentLink.restore();
    const restoredAt = server.lines().length;
    const dirty = await serverLine(/^md: bitmap dirty (\d+) of (\d+) chunks/, restoredAt);
    await serverLine(/^md: synced$/, restoredAt);
    const back = await until(
      'the server to be shown healthy again',
      async () => {
        const m = await show();
        return m.health === 'healthy' && m.replication?.server?.state === 'in-sync' ? m : undefined;
      },
      { timeoutMs: 90_000 },
    );
    const resent = (back.replication?.sentBytes ?? 0) - sentAtRestore;
    console.log(
      `physical server: bitmap ${dirty[1]} of ${dirty[2]} chunks dirty after the cut; ${(resent / MiB).toFixed(2)} MiB sent from restore to healthy (resync and new writes) of a ${SERVER_BOOT_DISK.sizeBytes / MiB} MiB disk; ${(sentAtRestore - sentBefore) / MiB} MiB sent while cut`,
    );
    assert.ok(Number(dirty[1]) < Number(dirty[2]) / 2, `only changed chunks: ${dirty[0]}`);
    assert.ok(resent < SERVER_BOOT_DISK.sizeBytes / 2, `${resent} bytes resent`);

    // Power loss.
    await serverLine(/^durable \d+$/, server.lines().length);
    await until(
      'the replica to catch up',
      async () => {
        const m = await show();
        return m.replication?.pendingBytes === 0 ? m : undefined;
      },
      { timeoutMs: 60_000 },
    );
    server.kill();
    await server.exited;
    const durable = lastDurable(server);
    server = null;

    // 4. Fail over: the server's disks boot as a VM at the recovery site.
    for (const line of failover) await shOk(line);
    machine = await show();
    assert.equal(machine.state, 'failed-over');
    assert.equal(machine.sourceFence?.verified, false, 'no BMC: never called fenced');
    const recovered = await recoveredRecord('the recovered VM to find its records');
    if (!(recovered >= durable && recovered <= durable + 1)) {
      const jobs = JSON.parse(await shOk('haven jobs list --json')) as Array<{ id: string; kind: string }>;
      const job = jobs.find((j) => j.kind === 'failover');
      const points = await shOk(`haven machines points ${NAME}`);
      assert.fail(
        `recovered ${recovered}; record ${durable} was durable at the power loss\nfailover: ${job ? await shOk(`haven jobs show ${job.id} --json`) : 'none'}\npoints:\n${points}`,
      );
    }
    const exported = join(work, 'point.raw');
    await shOk(`haven export ${NAME} --point latest --out ${exported}`);
    // e2fsck on each filesystem of the point, at its partition's offset (the export is a copy: journals are replayed into it first).
    const checks = await checkDiskFilesystems({
      diskId: 'disk0',
      file: exported,
      sizeBytes: SERVER_BOOT_DISK.sizeBytes,
      signal: AbortSignal.timeout(120_000),
      timeoutMs: 120_000,
    });
    const ext4 = checks.filter((c) => c.type === 'ext4');
    assert.deepEqual(
      ext4.map((c) => c.label),
      [SERVER_BOOT_DISK.system.label, SERVER_BOOT_DISK.data.label],
      JSON.stringify(checks.map((c) => c.type)),
    );
    for (const check of ext4) assert.equal(check.result, 'passed', `${check.label}: ${check.evidence}`);

    // 5. Fail back onto the server itself. The VM's records are what the server must find.
    const vmDurable = await vmDurableAfter(recovered + 5);
    let failbackRun: { exited: Promise<number | null>; output: () => string } | null = null;
    for (const line of failback) {
      if (line.startsWith('haven reprotect')) {
        // Refused until the server's agent has been silent long enough to be taken as off.
        await until(
          'reprotect to be accepted',
          async () => {
            try {
              return await shOk(line);
            } catch (error) {
              if (!/agent|leg|connected|report/i.test(String(error))) throw error;
              return undefined;
            }
          },
          { timeoutMs: WAIT_MS },
        );
        continue;
      }
      if (!line.startsWith('haven failback')) {
        await shOk(line);
        continue;
      }
      // The command waits for the server, as the operator's terminal does while they boot it.
      const child = spawn('sh', ['-c', line], {
        cwd: shell.dir,
        env: shell.env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      failbackRun = collectOutput(child);
    }
    assert.ok(failbackRun, 'the page fails back');
    const media = await until(
      'the recovery environment',
      async () => {
        const jobs = JSON.parse(await shOk('haven jobs list --json')) as Array<{ id: string; kind: string }>;
        const job = jobs.find((j) => j.kind === 'failback');
        if (!job) return undefined;
        const shown = JSON.parse(await shOk(`haven jobs show ${job.id} --json`)) as {
          output: { serverFailbackMedia?: { dir: string; rangeBytes: number } };
        };
        return shown.output.serverFailbackMedia;
      },
      { timeoutMs: WAIT_MS },
    ).catch((error: Error) => assert.fail(`${error.message}\n${failbackRun?.output()}`));
    const envStarted = Date.now();
    server = bootGuest({
      bootFromDisk: true,
      disk: { file: disk },
      qemuArgs: [
        '-netdev',
        `user,id=n0,tftp=${media.dir},bootfile=boot.ipxe`,
        '-device',
        'virtio-net-pci,netdev=n0,romfile=/usr/lib/ipxe/qemu/pxe-virtio.rom,disable-legacy=on',
        '-boot',
        'n',
      ],
    });
    const done = await serverLine(/^failback: done (\d+) in (\d+) ms$/);
    await server.exited;
    const envMs = Date.now() - envStarted;
    server = bootGuest({ bootFromDisk: true, disk: { file: disk }, qemuArgs: NIC });
    const own = await serverLine(/^(recovered (\d+) ok|corrupt at .*)$/);
    assert.ok(
      own[2] !== undefined && Number(own[2]) >= vmDurable,
      `${own[0]} on the server's own disk; the VM had made record ${vmDurable} durable`,
    );
    const running = failbackRun;
    const code = await Promise.race([
      running.exited,
      new Promise<never>((_, reject) =>
        setTimeout(() => {
          const lines = server?.lines() ?? [];
          reject(
            new Error(
              `the failback did not end:\n${running.output().slice(-2000)}\nthe server's console:\n${[...lines.filter((l) => !/^(durable|tput) /.test(l)).slice(-60)].join('\n')}`,
            ),
          );
        }, WAIT_MS).unref(),
      ),
    ]);
    assert.equal(code, 0, failbackRun.output());
    const backMs = Date.now() - envStarted;
    console.log(
      `physical server: failback wrote ${(Number(done[1]) / MiB).toFixed(2)} MiB (${(media.rangeBytes / MiB).toFixed(2)} MiB diverged) in ${done[2]} ms; recovery environment ${envMs} ms from spawn to its reboot; ${backMs} ms until the server's legs were in sync again`,
    );
    machine = await show();
    assert.equal(machine.activeHostId, machine.primaryHostId, 'back at the primary');

    // 6. Protect it again.
    for (const line of forward) await shOk(line);
    const again = await until(
      'the server to be protected and healthy again',
      async () => {
        const m = await show();
        return m.state === 'protected' && m.health === 'healthy' ? m : undefined;
      },
      { timeoutMs: 90_000 },
    );
    assert.equal(again.replication?.server?.state, 'in-sync');

    // 7. Planned failover: the agent shuts the server down, the VM starts with every record; then it fails back as a VM.
    const retire = rest.shift();
    assert.ok(retire, 'the page retires the hardware');
    const retired = server;
    await serverLine(/^durable \d+$/, retired.lines().length);
    let plannedRecovered = 0;
    for (const line of retire) {
      if (line.startsWith('haven planned-failover')) {
        await shOk(line);
        // The agent powered the server off: its last durable record is what the VM must find.
        await retired.exited;
        const serverDurable = lastDurable(retired);
        server = null;
        machine = await show();
        assert.equal(machine.state, 'failed-over');
        const jobs = JSON.parse(await shOk('haven jobs list --json')) as Array<{ id: string; kind: string }>;
        const job = jobs.find((j) => j.kind === 'planned-failover');
        const shownJob = JSON.parse(await shOk(`haven jobs show ${job?.id} --json`)) as {
          output: { shutdown?: string };
        };
        assert.match(shownJob.output.shutdown ?? '', /^shut down after/, JSON.stringify(shownJob.output));
        plannedRecovered = await recoveredRecord('the VM to find the records of the server it replaces');
        assert.ok(
          plannedRecovered >= serverDurable && plannedRecovered <= serverDurable + 1,
          `recovered ${plannedRecovered}; the server had made record ${serverDurable} durable before its planned shutdown`,
        );
        console.log(
          `physical server: planned failover ${shownJob.output.shutdown}; the VM found record ${plannedRecovered} (the server had made ${serverDurable} durable)`,
        );
        continue;
      }
      if (line.startsWith('haven failback')) {
        const vmLast = await vmDurableAfter(plannedRecovered + 3);
        await shOk(line);
        const found = await recoveredRecord('the VM at the primary site to find its records');
        assert.ok(
          found >= vmLast,
          `recovered ${found} at the primary site; the VM had made ${vmLast} durable`,
        );
        console.log(
          `physical server, failed back as a VM at the primary site: found record ${found} (${vmLast} durable)`,
        );
        continue;
      }
      await shOk(line);
    }
    const asVm = await until(
      'the machine to be protected and healthy as a VM of the primary host',
      async () => {
        const m = await show();
        return m.state === 'protected' && m.health === 'healthy' ? m : undefined;
      },
      { timeoutMs: 90_000 },
    );
    const hosts = JSON.parse(await shOk('haven hosts list --json')) as Array<{ id: string; name: string }>;
    assert.equal(asVm.primaryHostId, hosts.find((h) => h.name === 'primary')?.id);
    assert.equal(asVm.server ?? null, null, 'a VM now, no longer a server');
    assert.equal(asVm.replication?.server ?? null, null);
    assert.equal(rest.length, 0, 'every section of the page is run');
  });
});
