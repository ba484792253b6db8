import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type RunningVault, startVault } from '../app/start-vault.ts';
import { isTerminalJobState } from '../domain/job-states.ts';
import type { Host, Job, Machine, MachineState, RecoveryPoint } from '../domain/model.ts';
import { exportNameOf } from '../host/host-disk-service.ts';
import type { PointView } from '../host/host-services.ts';
import { type RunningHost, startHost } from '../host/index.ts';
import { createSparseImage } from '../storage/index.ts';
import { qemuIoFlushed } from '../testing/qemu-io.ts';
import { until as waitUntil } from '../testing/until.ts';

/**
 * Initial-copy progress and the resync operation through the vault, with a
 * primary and a recovery host agent in this process replicating over TLS on
 * loopback. The primary's bandwidth is limited so a copy takes seconds, and
 * its journal is small so an outage overflows it into the dirty bitmap.
 */
const run = promisify(execFile);
const MiB = 1 << 20;
const SIZE = 128 * MiB;
const BANDWIDTH = 24 * MiB;
const JOURNAL = 4 * MiB;

let dir: string;
let vault: RunningVault;
let primary: RunningHost;
let recovery: RunningHost;
let machine: Machine;
let image: string;

const until = <T>(what: string, probe: () => Promise<T | undefined | false>) =>
  waitUntil(what, probe, { timeoutMs: 120_000, intervalMs: 50 });

async function api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const response = await vault.app.request(`/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${vault.adminToken}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json().catch(() => null)) as T };
}

const getMachine = async () => (await api<Machine>('GET', `/machines/${machine.id}`)).body;

async function finished(jobId: string, seen?: Set<MachineState>): Promise<Job> {
  return until(`job ${jobId}`, async () => {
    seen?.add((await getMachine()).state);
    const { body } = await api<Job>('GET', `/jobs/${jobId}`);
    return isTerminalJobState(body.state) ? body : undefined;
  });
}

async function points(): Promise<RecoveryPoint[]> {
  const { body } = await api<{ recoveryPoints: RecoveryPoint[]; source: string }>(
    'GET',
    `/machines/${machine.id}/recovery-points`,
  );
  assert.equal(body.source, 'replica-store');
  return body.recoveryPoints;
}

const newest = (list: RecoveryPoint[]) => list.reduce((a, b) => (b.sequence > a.sequence ? b : a));

/** Writes through the disk service (a real NBD client) and waits for a point that holds the write. */
async function writeAndReplicate(offset: number): Promise<RecoveryPoint> {
  const before = (await points()).reduce((n, p) => Math.max(n, p.sequence), -1);
  await qemuIoFlushed(machine.disks[0]!.nbdUri!, `write -P 0x7e ${offset} 64k`);
  return until('a recovery point after the write', async () => {
    const m = await getMachine();
    const list = await points();
    const latest = list.length > 0 ? newest(list) : undefined;
    return m.replication?.pendingBytes === 0 && latest !== undefined && latest.sequence > before
      ? latest
      : undefined;
  });
}

/** Whether the replica at the point equals the source image (qemu-img compare of a read-only view). */
async function replicaEqualsSource(pointId: string): Promise<boolean> {
  const view = await vault.context.hosts.call<PointView>(machine.recoveryHostId!, 'replica.openView', {
    machineId: machine.id,
    pointId,
    writable: false,
  });
  try {
    await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', image, view.disks[0]!.nbdUri]);
    return true;
  } catch (error) {
    if ((error as { code?: number }).code === 1) {
      console.log(`replica and source differ: ${(error as { stdout?: string }).stdout?.trim()}`);
      return false;
    }
    throw error;
  } finally {
    await vault.context.hosts.call(machine.recoveryHostId!, 'replica.closeView', {
      viewId: view.viewId,
      discardWrites: true,
    });
  }
}

/** Changes the source image behind the disk service's back: a divergence no journal knows about. */
async function divergeBehindTheJournal(offset: number, length: number): Promise<void> {
  const file = await open(image, 'r+');
  try {
    await file.write(randomBytes(length), 0, length, offset);
    await file.sync();
  } finally {
    await file.close();
  }
}

async function resync(body: { full?: boolean }, seen: Set<MachineState>): Promise<Job> {
  const started = await api<Job>('POST', `/machines/${machine.id}/resync`, body);
  assert.equal(started.status, 202, JSON.stringify(started.body));
  const job = await finished(started.body.id, seen);
  assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
  return job;
}

function startPrimary(enrol?: { apiUrl: string; token: string; name: string; site: string }) {
  return startHost({
    dataDir: join(dir, 'primary'),
    ...(enrol ? { enrol } : {}),
    replicationListen: { host: '127.0.0.1', port: 0 },
    senderPollMs: 25,
    bandwidthBytesPerSec: BANDWIDTH,
    journalCapacityBytes: JOURNAL,
    log: () => {},
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-resync-'));
  vault = await startVault({ dataDir: join(dir, 'vault'), port: 0, controlPort: 0, monitorIntervalMs: 100 });
  const enrol = async (name: string) => {
    assert.equal((await api('POST', '/sites', { name, role: name })).status, 201);
    const { body } = await api<{ token: string }>('POST', '/enrolment-tokens', {
      siteId: name,
      hostName: name,
    });
    return { apiUrl: vault.url, token: body.token, name, site: name };
  };
  primary = await startPrimary(await enrol('primary'));
  recovery = await startHost({
    dataDir: join(dir, 'recovery'),
    enrol: await enrol('recovery'),
    replicationListen: { host: '127.0.0.1', port: 0 },
    senderPollMs: 25,
    log: () => {},
  });
  await until('both hosts to report their replication endpoints', async () => {
    const { body } = await api<{ hosts: Host[] }>('GET', '/hosts');
    return (
      body.hosts.length === 2 && body.hosts.every((h) => h.replicationFingerprint && h.status === 'connected')
    );
  });
});

after(async () => {
  await primary?.stop();
  await recovery?.stop();
  await vault?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('initial copy progress and resync through the vault', () => {
  it('shows the initial copy’s progress as it goes, in the job and on the machine', async () => {
    image = join(dir, 'primary', 'images', 'app-01.img');
    await mkdir(dirname(image), { recursive: true });
    await createSparseImage(image, SIZE);
    // Incompressible data the bandwidth limit spreads over seconds; the rest stays a hole.
    await divergeBehindTheJournal(0, 96 * MiB);
    const created = await api<Machine>('POST', '/machines', {
      name: 'app-01',
      hostId: 'primary',
      disks: [{ id: 'disk0', sizeBytes: SIZE, source: image }],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    machine = created.body;
    const started = await api<Job>('POST', `/machines/${machine.id}/enable-replication`, {
      recoveryHostId: 'recovery',
      policyId: 'default',
    });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const stepProgress: number[] = [];
    const machineProgress: { progress: number; done: number; total: number }[] = [];
    const job = await until('enable-replication to end', async () => {
      const { body } = await api<Job>('GET', `/jobs/${started.body.id}`);
      const step = body.steps.find((s) => s.name === 'initial-replication');
      if (step?.state === 'running') stepProgress.push(step.progress);
      const m = await getMachine();
      if (m.state === 'enabling-replication' && m.replication?.state === 'initial-sync') {
        machineProgress.push({
          progress: m.replication.progress,
          done: m.replication.copy?.doneBytes ?? -1,
          total: m.replication.copy?.totalBytes ?? -1,
        });
      }
      return isTerminalJobState(body.state) ? body : undefined;
    });
    assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
    machine = await getMachine();
    assert.equal(machine.state, 'protected');
    const between = stepProgress.filter((p) => p > 0 && p < 100);
    assert.ok(between.length >= 2, `job step progress seen: ${stepProgress.join(' ')}`);
    assert.ok(between.at(-1)! > between[0]!, `job step progress grows: ${between.join(' ')}`);
    const partial = machineProgress.filter((p) => p.progress > 0 && p.progress < 100);
    assert.ok(partial.length >= 1, `machine progress seen: ${JSON.stringify(machineProgress)}`);
    for (const p of partial) {
      assert.equal(p.total, SIZE);
      assert.ok(p.done > 0 && p.done < SIZE, JSON.stringify(p));
    }
    console.log(`initial copy: job step ${between.join(' ')} %`);
  });

  it('resync compares hashes and repairs a replica that diverged behind the journal’s back', async () => {
    const before = await writeAndReplicate(0);
    assert.ok(await replicaEqualsSource(before.id), 'the replica equals the source before the divergence');
    await divergeBehindTheJournal(40 * MiB + 4096, MiB);
    const diverged = await writeAndReplicate(MiB);
    assert.equal(await replicaEqualsSource(diverged.id), false, 'the divergence is not replicated');

    const seen = new Set<MachineState>();
    const job = await resync({}, seen);
    assert.ok(seen.has('resynchronizing'), `states seen: ${[...seen].join(', ')}`);
    const [disk] = job.output.resync as { kind: string; blocksDiffering: number; copiedBytes: number }[];
    assert.equal(disk?.kind, 'hash');
    // 1 MiB not aligned to the 64 KiB blocks: 17 blocks, and nothing else differs.
    assert.equal(disk?.blocksDiffering, 17);
    assert.equal(disk?.copiedBytes, 17 * 64 * 1024);
    assert.equal((await getMachine()).state, 'protected');
    const resynced = await writeAndReplicate(2 * MiB);
    assert.ok(await replicaEqualsSource(resynced.id), 'the replica equals the source after the resync');
  });

  it('resync --full copies the whole disk', async () => {
    // Inside the data written before protection: the disk service reads holes from its allocation map.
    await divergeBehindTheJournal(80 * MiB, 64 * 1024);
    const diverged = await writeAndReplicate(5 * MiB);
    assert.equal(await replicaEqualsSource(diverged.id), false, 'the divergence is not replicated');
    const seen = new Set<MachineState>();
    const job = await resync({ full: true }, seen);
    const [disk] = job.output.resync as { kind: string; copiedBytes: number }[];
    assert.equal(disk?.kind, 'full');
    assert.equal(disk?.copiedBytes, SIZE);
    const resynced = await writeAndReplicate(3 * MiB);
    assert.ok(await replicaEqualsSource(resynced.id));
  });

  it('resync after an outage that overflowed the journal copies the dirty regions only', async () => {
    const [host, port] = recovery.dataPath.replicationAddress.split(':');
    await recovery.stop();
    // More than the journal holds: the disk service goes on in bitmap mode.
    await qemuIoFlushed(machine.disks[0]!.nbdUri!, `write -P 0x42 ${8 * MiB} ${8 * MiB}`);
    const journal = primary.dataPath.diskService.journalStatus(
      exportNameOf({ machineId: machine.id, diskId: 'disk0' }),
    );
    assert.equal(journal.mode, 'bitmap', JSON.stringify(journal));
    const started = await api<Job>('POST', `/machines/${machine.id}/resync`, {});
    assert.equal(started.status, 202, JSON.stringify(started.body));
    await until('the machine to show resynchronizing', async () => {
      return (await getMachine()).state === 'resynchronizing';
    });
    recovery = await startHost({
      dataDir: join(dir, 'recovery'),
      replicationListen: { host: host!, port: Number(port) },
      senderPollMs: 25,
      log: () => {},
    });
    const job = await finished(started.body.id);
    assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
    const [disk] = job.output.resync as { kind: string; copiedBytes: number }[];
    assert.equal(disk?.kind, 'bitmap');
    assert.ok(disk!.copiedBytes > 0 && disk!.copiedBytes < SIZE / 4, JSON.stringify(disk));
    assert.equal((await getMachine()).state, 'protected');
    const resynced = await writeAndReplicate(4 * MiB);
    assert.ok(await replicaEqualsSource(resynced.id));
  });
});
