/**
 * Live protection of a libvirt domain an operator already runs, end to end:
 * `haven up --libvirt` as a real process on a real libvirtd (QEMU under TCG),
 * the test guest writing records to its qcow2 disk. The domain is protected
 * without a restart; the agent is killed (kill -9) under the running guest,
 * briefly and then for longer than QEMU's reconnect delay; the domain is shut
 * down and started; its QEMU is killed and the machine fails over into a
 * domain of its own at the recovery host, then commits off the view. The
 * recovered domain is reprotected back to the original's image (only the
 * blocks that diverged sent), fails back into the original domain, which
 * boots on its own image with the recovered domain's records, and is
 * protected forward again.
 * Debian: libvirt-daemon-system, qemu-system-x86, qemu-utils, libnbd-bin, e2fsprogs.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { isTerminalJobState } from '../domain/job-states.ts';
import type { Job, Machine, MirroredDiskState, RecoveryPoint } from '../domain/model.ts';
import { findQemuProcesses } from '../hypervisor/qemu-process.ts';
import { NbdServer } from '../nbd/index.ts';
import { ReplicaStore } from '../replica/index.ts';
import { type Child, freePort, spawnTs } from '../testing/child-process.ts';
import { records } from '../testing/guest-console.ts';
import {
  defineTestDomain,
  importTestDomain,
  type LibvirtTestDomain,
  reachableFolder,
} from '../testing/libvirt-domain.fixture.ts';
import { ensureLibvirtd, type Libvirtd, libvirtMissing } from '../testing/libvirtd.fixture.ts';
import { nbdUnixUri, runOk } from '../testing/nbd-test-fixture.ts';
import { until as waitUntil } from '../testing/until.ts';

const run = promisify(execFile);
const skip = await libvirtMissing();
const CLI = 'src/cli/main.ts';
/** What the guest prints when its disk fails it (kernel, ext4, or its own workload). */
const DISK_FAILURE =
  /I\/O error|EXT4-fs (error|warning)|Aborting journal|write failed|fsync failed|Remounting/i;
/** QEMU holds the guest's writes this long while the sink is away (the mirror service's default). */
const RECONNECT_DELAY_MS = 10_000;

describe('live protection of a running libvirt domain', { skip }, () => {
  let libvirtd: Libvirtd;
  let domain: LibvirtTestDomain;
  let dir: string;
  let store: string;
  let up: Child | null = null;
  let port: number;
  let controlPort: number;
  let machine: Machine;
  let qemuPid: number;
  /** The domain the failover defined at the recovery host (kept here: commit after failback forgets it). */
  let recoveredVm: string | undefined;
  const suffix = randomBytes(3).toString('hex');
  const name = `haven-lp-${suffix}`;
  const until = <T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 180_000) =>
    waitUntil(what, probe, { timeoutMs, intervalMs: 250 });

  async function api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const token = (await readFile(join(dir, 'admin.token'), 'utf8')).trim();
    const response = await fetch(`http://127.0.0.1:${port}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json().catch(() => null)) as T };
  }

  async function operate(operation: string, body: unknown): Promise<Job> {
    const started = await api<Job>('POST', `/machines/${machine.id}/${operation}`, body);
    assert.equal(started.status, 202, `${operation}: ${JSON.stringify(started.body)}`);
    const job = await until(`${operation} to finish`, async () => {
      const { body: j } = await api<Job>('GET', `/jobs/${started.body.id}`);
      return isTerminalJobState(j.state) ? j : undefined;
    });
    assert.equal(
      job.state,
      'succeeded',
      `${operation}: ${JSON.stringify(job.error)} ${JSON.stringify(job.steps)}`,
    );
    machine = await current();
    return job;
  }

  async function current(): Promise<Machine> {
    return (await api<Machine>('GET', `/machines/${machine.id}`)).body;
  }

  const mirrorDisk = (m: Machine): MirroredDiskState | undefined => m.replication?.mirror?.disks[0];

  async function consoleLines(): Promise<string[]> {
    return (await readFile(domain.consoleFile, 'utf8').catch(() => '')).split('\n');
  }

  /** `haven up` as an operator runs it, until it says it is up. */
  async function startUp(): Promise<void> {
    const child = spawnTs(CLI, [
      'up',
      '--data',
      dir,
      '--port',
      String(port),
      '--control-port',
      String(controlPort),
      '--libvirt',
      libvirtd.uri,
      '--share-group',
      'libvirt-qemu',
      '--storage',
      store,
      // The domain's own folder (its kernel and initrd boot the recovered copy too).
      '--storage',
      domain.dir,
      '--no-demo',
    ]);
    up = child;
    await until('haven up to come up', async () => child.output().includes('is up.'), 60_000).catch(
      (error: Error) => assert.fail(`${error.message}:\n${child.output()}`),
    );
  }

  async function killUp(): Promise<void> {
    const child = up!;
    up = null;
    child.process.kill('SIGKILL');
    await child.exited;
  }

  /** Healthy again, the mirror armed, and a point cut after `since`. */
  async function protectedAgain(since: number): Promise<Machine> {
    return until('the machine to be healthy with its mirror armed and a new point', async () => {
      const m = await current().catch(() => undefined);
      const lastPoint = m?.replication?.mirror?.lastPointAt;
      return m?.health === 'healthy' &&
        m.replication?.mirror?.state === 'armed' &&
        lastPoint &&
        Date.parse(lastPoint) > since
        ? m
        : undefined;
    });
  }

  before(async () => {
    libvirtd = await ensureLibvirtd();
    domain = await defineTestDomain(libvirtd.uri, name);
    await run('virsh', ['-c', libvirtd.uri, 'start', name]);
    dir = await mkdtemp(join(tmpdir(), 'haven-lp-'));
    // Where commit puts the recovered disk: a folder libvirt's QEMU can reach, ours, never world-writable.
    store = await reachableFolder('haven-lp-store-');
    port = await freePort();
    controlPort = await freePort();
    await startUp();
  });

  after(async () => {
    if (up) await killUp();
    for (const domainName of [recoveredVm].filter((n) => n !== undefined)) {
      await run('virsh', ['-c', libvirtd.uri, 'destroy', domainName]).catch(() => {});
      await run('virsh', ['-c', libvirtd.uri, 'undefine', domainName]).catch(() => {});
      await rm(`/var/log/libvirt/qemu/${domainName}.log`, { force: true });
      await rm(`/var/log/libvirt/qemu/${domainName}-console.log`, { force: true });
    }
    await domain?.remove();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (store) await rm(store, { recursive: true, force: true });
    await libvirtd?.stop();
  });

  it('protects the running domain without restarting it', async () => {
    await until('the guest to write records', async () => records(await consoleLines()).durable >= 3);
    [qemuPid] = (await findQemuProcesses(`guest=${name},`)) as [number];
    assert.ok(qemuPid, 'the domain runs under QEMU');
    // The recovery site reaches the same bridge (both sites share this machine).
    machine = await importTestDomain(api, domain);
    const started = Date.now();
    await operate('enable-replication', { recoveryHostId: 'recovery', policyId: 'default' });
    assert.equal(machine.state, 'protected');
    const protectedMachine = await protectedAgain(started);
    assert.equal(mirrorDisk(protectedMachine)?.target, 'vda');
    assert.deepEqual(
      await findQemuProcesses(`guest=${name},`),
      [qemuPid],
      'the same QEMU process runs the domain',
    );
    const points = await api<{ recoveryPoints: RecoveryPoint[] }>(
      'GET',
      `/machines/${machine.id}/recovery-points`,
    );
    assert.ok(points.body.recoveryPoints.length > 0, 'recovery points');
  });

  it('paused for a block job libvirt refuses while mirrored, then resumed, sending only what changed', async () => {
    const side = join(store, 'side.qcow2');
    const blockcopy = () =>
      run('virsh', [
        '-c',
        libvirtd.uri,
        'blockcopy',
        name,
        'vda',
        '--dest',
        side,
        '--format',
        'qcow2',
        '--transient-job',
      ]);
    // Haven's mirror holds the disk: QEMU refuses another block job on it.
    await assert.rejects(blockcopy(), /busy|block job|in use|root block node/i);
    const paused = await api<{ paused?: boolean; state: string }>(
      'POST',
      `/machines/${machine.id}/pause-protection`,
      {},
    );
    assert.equal(paused.status, 200, JSON.stringify(paused.body));
    assert.equal(paused.body.paused, true);
    const shown = await until('the machine to say its protection is paused', async () => {
      const m = await current();
      return m.replication?.state === 'paused' ? m : undefined;
    });
    assert.notEqual(shown.health, 'healthy');
    // Paused, libvirt's own block job runs; ended, protection resumes.
    await blockcopy();
    await run('virsh', ['-c', libvirtd.uri, 'blockjob', name, 'vda', '--abort']);
    await rm(side, { force: true });
    const resumedAt = Date.now();
    const resumed = await api('POST', `/machines/${machine.id}/resume-protection`, {});
    assert.equal(resumed.status, 200, JSON.stringify(resumed.body));
    const again = await protectedAgain(resumedAt);
    const rearm = mirrorDisk(again)?.lastRearm;
    assert.match(rearm?.reason ?? '', /resumed after a pause/);
    assert.ok(
      rearm?.compared && rearm.journaledBytes !== null && rearm.journaledBytes < domain.diskBytes / 8,
    );
    assert.deepEqual(await findQemuProcesses(`guest=${name},`), [qemuPid]);
  });

  it('kill -9 of the agent under the running guest: the guest keeps writing and the mirror goes on without a copy', async () => {
    const before = records(await consoleLines()).durable;
    await killUp();
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const restarted = Date.now();
    await startUp();
    const again = await protectedAgain(restarted);
    // QEMU held the writes and reconnected: the job never failed, nothing was copied again.
    assert.equal(mirrorDisk(again)?.arms, 0, JSON.stringify(again.replication?.mirror));
    await until('the guest to write on', async () => records(await consoleLines()).durable > before + 5);
    assert.deepEqual(await findQemuProcesses(`guest=${name},`), [qemuPid]);
    assert.doesNotMatch((await consoleLines()).join('\n'), DISK_FAILURE);
  });

  it('an agent away longer than the reconnect delay: the mirror is armed again, sending only what changed', async (t) => {
    const before = records(await consoleLines()).durable;
    await killUp();
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_DELAY_MS + 3000));
    const written = records(await consoleLines()).durable - before;
    assert.ok(written > 0, 'the guest wrote while the agent was away');
    const restarted = Date.now();
    await startUp();
    const again = await protectedAgain(restarted);
    const rearm = mirrorDisk(again)?.lastRearm;
    assert.ok(rearm?.compared, JSON.stringify(again.replication?.mirror));
    assert.match(rearm.reason, /mirror failed/);
    // QEMU's copy of the whole disk reached the sink; only the blocks the guest changed were journaled.
    assert.ok(rearm.journaledBytes !== null && rearm.skippedBytes !== null);
    t.diagnostic(
      `re-arm after ${RECONNECT_DELAY_MS + 3000} ms away, ${written} records written meanwhile: ${rearm.journaledBytes} bytes journaled, ${rearm.skippedBytes} skipped`,
    );
    assert.ok(
      rearm.journaledBytes < domain.diskBytes / 8,
      `journaled ${rearm.journaledBytes} bytes of a ${domain.diskBytes}-byte disk for ${written} records`,
    );
    assert.ok(rearm.skippedBytes > domain.diskBytes / 2, `skipped ${rearm.skippedBytes}`);
    assert.deepEqual(await findQemuProcesses(`guest=${name},`), [qemuPid]);
    assert.doesNotMatch((await consoleLines()).join('\n'), DISK_FAILURE);
  });

  it('the domain shut down: its last point is the disk; started again, the mirror is armed again', async () => {
    await run('virsh', ['-c', libvirtd.uri, 'shutdown', name]);
    const paused = await until('the machine to say its domain is off', async () => {
      const m = await current();
      return mirrorDisk(m)?.state === 'domain-off' && m.replication?.state === 'paused' ? m : undefined;
    });
    assert.notEqual(paused.health, 'healthy');
    await until('the sender to drain', async () =>
      (await current()).replication?.pendingBytes === 0 ? true : undefined,
    );
    await killUp();
    // The latest point at the recovery host, read through the replica store and served over NBD.
    const replica = await ReplicaStore.open(join(dir, 'hosts', 'recovery', 'replica'));
    const server = new NbdServer();
    const socket = join(dir, 'compare.sock');
    await server.listen({ path: socket });
    try {
      const diskKey = `${machine.id}/vda`;
      const latest = replica.listPoints(diskKey).at(-1)!;
      const view = await replica.openView(diskKey, latest.id);
      server.addExport('latest', { backend: view });
      await runOk('qemu-img', [
        'compare',
        '-f',
        'qcow2',
        '-F',
        'raw',
        domain.image,
        nbdUnixUri(socket, 'latest'),
      ]);
      await server.removeExport('latest');
      await view.close();
    } finally {
      await server.close();
      await replica.close();
    }
    const restarted = Date.now();
    await startUp();
    await run('virsh', ['-c', libvirtd.uri, 'start', name]);
    const again = await protectedAgain(restarted);
    assert.match(mirrorDisk(again)?.lastRearm?.reason ?? '', /new QEMU process/);
    assert.ok(mirrorDisk(again)?.lastRearm?.compared);
    [qemuPid] = (await findQemuProcesses(`guest=${name},`)) as [number];
  });

  it("kill -9 of the domain's QEMU: failover at the latest processed point boots a domain of its own that resumes the workload", async () => {
    const before = records(await consoleLines()).durable;
    await until(
      'the restarted guest to write records',
      async () => records(await consoleLines()).durable > before + 3,
    );
    process.kill(qemuPid, 'SIGKILL');
    const stopped = Date.now();
    const durable = records(await consoleLines()).durable;
    await until('the last point of the killed domain', async () => {
      const m = await current();
      const last = m.replication?.mirror?.lastPointAt;
      return mirrorDisk(m)?.state === 'domain-off' && last && Date.parse(last) >= stopped - 1000
        ? m
        : undefined;
    });
    // The crash-consistent point's file system, on a copy: the journal replayed, then checked read-only.
    await killUp();
    const replica = await ReplicaStore.open(join(dir, 'hosts', 'recovery', 'replica'));
    const server = new NbdServer();
    const socket = join(dir, 'fsck.sock');
    const copy = join(dir, 'point.raw');
    await server.listen({ path: socket });
    try {
      const diskKey = `${machine.id}/vda`;
      const view = await replica.openView(diskKey, replica.listPoints(diskKey).at(-1)!.id);
      server.addExport('latest', { backend: view });
      await runOk('nbdcopy', [nbdUnixUri(socket, 'latest'), copy]);
      await server.removeExport('latest');
      await view.close();
    } finally {
      await server.close();
      await replica.close();
    }
    await run('e2fsck', ['-E', 'journal_only', '-y', copy]).catch(() => {});
    await runOk('e2fsck', ['-fn', copy]);
    await rm(copy);
    await startUp();
    await until('the hosts to connect', async () => {
      const { body } = await api<{ hosts: Array<{ status: string }> }>('GET', '/hosts');
      return body?.hosts?.every((h) => h.status === 'connected') ? true : undefined;
    });
    await operate('failover', { recoveryPoint: { option: 'latest-processed' }, shutdownSource: false });
    assert.equal(machine.state, 'failed-over');
    const copyVm = machine.runtime.failover!.vmName;
    recoveredVm = copyVm;
    assert.notEqual(copyVm, name);
    const recoveredConsole = `/var/log/libvirt/qemu/${copyVm}-console.log`;
    const recovered = await until('the recovered guest to check its records', async () => {
      const r = records((await readFile(recoveredConsole, 'utf8').catch(() => '')).split('\n'));
      return r.recovered !== null ? r : undefined;
    });
    // Every record the guest saw durable before its QEMU died is in the point.
    assert.ok(
      recovered.recovered! >= durable,
      `recovered ${recovered.recovered}, durable before the kill ${durable}`,
    );
    await operate('commit', {});
    const disks = (await run('virsh', ['-c', libvirtd.uri, 'domblklist', copyVm])).stdout;
    assert.match(disks, new RegExp(`vda\\s+${store}/\\S+\\.qcow2`), disks);
  });

  const recoveredConsole = () => `/var/log/libvirt/qemu/${recoveredVm}-console.log`;
  async function recoveredRecords() {
    return records((await readFile(recoveredConsole(), 'utf8').catch(() => '')).split('\n'));
  }

  it('reprotect: the recovered domain is protected back to the original image, sending only what diverged', async (t) => {
    const before = (await recoveredRecords()).durable;
    await until(
      'the recovered guest to write more records',
      async () => (await recoveredRecords()).durable > before + 5,
    );
    const started = Date.now();
    const job = await operate('reprotect', {});
    assert.equal(machine.state, 'reverse-protected');
    const sent = job.output.reprotectSent as {
      sentBytes: number;
      journaledBytes: number;
      skippedBytes: number;
      diskBytes: number;
    };
    t.diagnostic(`reprotect: ${JSON.stringify(sent)}`);
    // The replica at the primary started from the original image: only the blocks that diverged crossed.
    assert.equal(sent.diskBytes, domain.diskBytes);
    assert.ok(sent.journaledBytes > 0, 'the recovered guest wrote blocks the original does not have');
    assert.ok(sent.journaledBytes < domain.diskBytes / 8, `journaled ${sent.journaledBytes}`);
    assert.ok(sent.skippedBytes > domain.diskBytes / 2, `skipped ${sent.skippedBytes}`);
    assert.ok(
      sent.sentBytes < domain.diskBytes / 8,
      `sent ${sent.sentBytes} bytes of a ${domain.diskBytes}-byte disk`,
    );
    const healthy = await protectedAgain(started);
    assert.equal(healthy.replication?.mirror?.domain, recoveredVm);
  });

  it("failback: the original domain boots on its own image with the recovered domain's records, then is protected forward again", async (t) => {
    // The original domain is off: its console file is written again (from the start) only when it boots.
    await rm(domain.consoleFile, { force: true });
    await operate('failback', { dataSync: 'before-failover' });
    assert.equal(machine.state, 'failback-ready');
    const job = await operate('complete-failover', {});
    assert.equal(machine.state, 'failed-back');
    const durable = (await recoveredRecords()).durable;
    const written = job.output.writtenBack as { writtenBytes: number; comparedBytes: number };
    t.diagnostic(
      `failback: ${JSON.stringify(job.output.failbackSent)}, written back ${JSON.stringify(written)}`,
    );
    assert.ok(
      written.writtenBytes > 0 && written.writtenBytes < domain.diskBytes / 8,
      JSON.stringify(written),
    );
    assert.match((await run('virsh', ['-c', libvirtd.uri, 'domstate', name])).stdout, /running/);
    const booted = await until('the original domain to check its records', async () => {
      const r = records(await consoleLines());
      return r.recovered !== null ? r : undefined;
    });
    assert.ok(
      booted.recovered! >= durable,
      `recovered ${booted.recovered}, durable in the recovered domain ${durable}`,
    );
    await operate('commit', {});
    assert.equal(machine.state, 'failback-committed');
    const started = Date.now();
    const forward = await operate('reprotect', {});
    assert.equal(machine.state, 'protected');
    const sent = forward.output.reprotectSent as {
      sentBytes: number;
      journaledBytes: number;
      skippedBytes: number;
    };
    t.diagnostic(`reprotect forward: ${JSON.stringify(sent)}`);
    assert.ok(sent.journaledBytes < domain.diskBytes / 8, `journaled ${sent.journaledBytes}`);
    assert.ok(sent.sentBytes < domain.diskBytes / 8, `sent ${sent.sentBytes}`);
    const healthy = await protectedAgain(started);
    assert.equal(healthy.replication?.mirror?.domain, name);
    assert.doesNotMatch((await consoleLines()).join('\n'), DISK_FAILURE);
  });
});
