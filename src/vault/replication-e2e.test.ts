import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type Embedded, startEmbedded } from '../app/start-embedded.ts';
import { isTerminalJobState } from '../domain/job-states.ts';
import type { Alert, Host, Job, Machine, RecoveryPoint } from '../domain/model.ts';
import type { PointView } from '../host/host-services.ts';
import { createSparseImage } from '../storage/index.ts';
import { embeddedApi } from '../testing/embedded-api.ts';
import { qemuIoFlushed } from '../testing/qemu-io.ts';
import { until as waitUntil } from '../testing/until.ts';

const run = promisify(execFile);
let dir: string;
let up: Embedded;
let hosts: Host[];

const api = embeddedApi(() => up);
const until = <T>(what: string, probe: () => Promise<T | undefined | false>) =>
  waitUntil(what, probe, { timeoutMs: 60_000 });

async function finished(jobId: string): Promise<Job> {
  return until(`job ${jobId}`, async () => {
    const { body } = await api<Job>('GET', `/jobs/${jobId}`);
    return isTerminalJobState(body.state) ? body : undefined;
  });
}

/** Opens a read-only view of the replica at the point and compares it with the source image (qemu-img). */
async function assertReplicaEqualsSource(machine: Machine, pointId: string): Promise<void> {
  const hostId = machine.recoveryHostId!;
  const view = await up.vault.context.hosts.call<PointView>(hostId, 'replica.openView', {
    machineId: machine.id,
    pointId,
    writable: false,
  });
  try {
    const compared = await run('qemu-img', [
      'compare',
      '-f',
      'raw',
      '-F',
      'raw',
      machine.disks[0]!.source,
      view.disks[0]!.nbdUri,
    ]);
    assert.match(compared.stdout, /Images are identical/);
  } finally {
    await up.vault.context.hosts.call(hostId, 'replica.closeView', {
      viewId: view.viewId,
      discardWrites: true,
    });
  }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-repl-'));
  up = await startEmbedded({ dataDir: dir, port: 0, senderPollMs: 25, monitorIntervalMs: 200, demo: false });
  hosts = await until('both hosts to report their replication endpoints', async () => {
    const { body } = await api<{ hosts: Host[] }>('GET', '/hosts');
    return body.hosts.length === 2 &&
      body.hosts.every((h) => h.replicationFingerprint && h.status === 'connected')
      ? body.hosts
      : undefined;
  });
});

after(async () => {
  await up.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('replication through the vault (embedded primary and recovery hosts)', () => {
  let machine: Machine;
  const size = 32 << 20;

  it('enables replication of a disk with data on it: initial copy, then protected with a recovery point', async () => {
    // DATA/images is a storage folder of `haven up`'s hosts.
    const image = join(dir, 'images', 'web-01.img');
    await mkdir(join(dir, 'images'), { recursive: true });
    await createSparseImage(image, size);
    // Data before protection (the initial copy must carry it); the rest stays a hole.
    const file = await open(image, 'r+');
    await file.write(randomBytes(4 << 20), 0, 4 << 20, 0);
    await file.close();
    const created = await api<Machine>('POST', '/machines', {
      name: 'web-01',
      hostId: 'primary',
      disks: [{ id: 'disk0', sizeBytes: size, source: image }],
    });
    assert.equal(created.status, 201);
    // A tight RPO threshold, so the fault test below can breach it in seconds.
    const policy = await api<{ id: string }>('POST', '/policies', {
      name: 'tight',
      rpoThresholdSeconds: 2,
      retentionSeconds: 3600,
      appConsistentFrequencySeconds: 0,
    });
    assert.equal(policy.status, 201);
    const started = await api<Job>('POST', `/machines/${created.body.id}/enable-replication`, {
      recoveryHostId: 'recovery',
      policyId: 'tight',
    });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const job = await finished(started.body.id);
    assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
    assert.deepEqual(
      job.steps.map((s) => [s.name, s.state]),
      [
        'check-hosts',
        'attach-disks',
        'trust-sender',
        'start-replication',
        'initial-replication',
        'apply-retention',
      ].map((name) => [name, 'succeeded']),
    );
    machine = (await api<Machine>('GET', `/machines/${created.body.id}`)).body;
    assert.equal(machine.state, 'protected');
    assert.equal(machine.recoveryHostId, hosts.find((h) => h.name === 'recovery')!.id);
    assert.match(machine.disks[0]!.nbdUri ?? '', /^nbd\+unix:\/\/\/.+\?socket=/);
  });

  it('ships writes made through the disk service; every flush is a recovery point; a view equals the disk', async () => {
    const uri = machine.disks[0]!.nbdUri!;
    // A real NBD client writes through the disk service, then flushes.
    await qemuIoFlushed(uri, 'write -P 0x5a 8M 1M', 'write -z 1M 64k');
    const points = await until('a recovery point covering the writes', async () => {
      const { body } = await api<{ recoveryPoints: RecoveryPoint[]; source: string }>(
        'GET',
        `/machines/${machine.id}/recovery-points`,
      );
      assert.equal(body.source, 'replica-store');
      const m = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
      return m.replication?.pendingBytes === 0 && body.recoveryPoints.length >= 2
        ? body.recoveryPoints
        : undefined;
    });
    const latest = points.reduce((a, b) => (a.time >= b.time ? a : b));
    assert.ok(points.every((p) => p.type === 'crash-consistent' && p.processed));

    await assertReplicaEqualsSource(machine, latest.id);
  });

  it('reports health and RPO from the monitor, with no alert while within the threshold', async () => {
    const m = await until('a healthy snapshot', async () => {
      const body = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
      return body.health === 'healthy' ? body : undefined;
    });
    assert.equal(m.replication?.state, 'streaming');
    assert.equal(m.replication?.rpoSeconds, 0);
    const { body } = await api<{ alerts: Alert[] }>('GET', '/alerts?open=true');
    assert.equal(body.alerts.filter((a) => a.subjectId === machine.id).length, 0);
  });

  it('raises an RPO alert while the recovery host is down, clears it when it returns; nothing acknowledged is lost', async () => {
    const recovery = up.hosts.find((h) => h.agent.identity.name === 'recovery')!;
    const [host, port] = recovery.dataPath.replicationAddress.split(':');
    const dataDir = join(dir, 'hosts', 'recovery');
    await recovery.stop();
    // Writes go on at the primary; nothing can reach the replica.
    await qemuIoFlushed(machine.disks[0]!.nbdUri!, 'write -P 0x33 12M 2M');
    const alert = await until('an RPO alert', async () => {
      const { body } = await api<{ alerts: Alert[] }>('GET', '/alerts?open=true');
      return body.alerts.find((a) => a.key === `rpo:${machine.id}`);
    });
    assert.match(alert.message, /RPO \d+ s exceeds its policy's threshold of 2 s/);
    assert.equal((await api<Machine>('GET', `/machines/${machine.id}`)).body.health, 'critical');

    // The recovery host comes back on the same replication address.
    const { startHost } = await import('../host/index.ts');
    const restarted = await startHost({ dataDir, replicationListen: { host: host!, port: Number(port) } });
    up.hosts[up.hosts.indexOf(recovery)] = restarted;
    await until('the alert to clear', async () => {
      const { body } = await api<{ alerts: Alert[] }>('GET', '/alerts?open=true');
      return body.alerts.every((a) => a.key !== `rpo:${machine.id}`);
    });
    const m = await until('replication to catch up', async () => {
      const body = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
      return body.replication?.pendingBytes === 0 && body.health === 'healthy' ? body : undefined;
    });
    // The replica at its latest point equals the source disk: the writes made while it was down arrived.
    const { body } = await api<{ recoveryPoints: RecoveryPoint[] }>(
      'GET',
      `/machines/${m.id}/recovery-points`,
    );
    const latest = body.recoveryPoints.reduce((a, b) => (a.time >= b.time ? a : b));
    await assertReplicaEqualsSource(m, latest.id);
  });

  it('a disk its host cannot serve after a restart raises an alert and is never shown healthy; served again, it clears', async () => {
    const restartPrimary = async () => {
      const primary = up.hosts.find((h) => h.agent.identity.name === 'primary')!;
      const [host, port] = primary.dataPath.replicationAddress.split(':');
      await primary.stop();
      const { startHost } = await import('../host/index.ts');
      const restarted = await startHost({
        dataDir: join(dir, 'hosts', 'primary'),
        replicationListen: { host: host!, port: Number(port) },
        senderPollMs: 25,
      });
      up.hosts[up.hosts.indexOf(primary)] = restarted;
    };
    const image = machine.disks[0]!.source;
    // The image is gone while the agent is down: the restarted agent must not serve an empty disk in its place.
    await rename(image, `${image}.away`);
    await restartPrimary();
    const alert = await until('a disk path alert', async () => {
      const { body } = await api<{ alerts: Alert[] }>('GET', '/alerts?open=true');
      return body.alerts.find((a) => a.key === `disk-path:${machine.id}`);
    });
    assert.equal(alert.severity, 'critical');
    assert.match(alert.message, /web-01.*disk 'disk0'.*does not serve export .*cannot be opened/);
    const broken = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
    assert.equal(broken.health, 'critical');
    assert.equal(broken.replication?.state, 'error');
    assert.match(broken.replication?.lastError ?? '', /disk path broken/);
    await assert.rejects(open(image, 'r'), { code: 'ENOENT' });

    await rename(`${image}.away`, image);
    await restartPrimary();
    await until('the disk path alert to clear', async () => {
      const { body } = await api<{ alerts: Alert[] }>('GET', '/alerts?open=true');
      return body.alerts.every((a) => a.key !== `disk-path:${machine.id}`);
    });
    await until('the machine to be healthy again', async () => {
      const body = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
      return body.health === 'healthy' && body.replication?.state === 'streaming' ? body : undefined;
    });
  });

  it('disables replication: the replica is deleted and the machine is unprotected again', async () => {
    const started = await api<Job>('POST', `/machines/${machine.id}/disable-replication`, {});
    assert.equal(started.status, 202);
    const job = await finished(started.body.id);
    assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
    const m = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
    assert.equal(m.state, 'unprotected');
    assert.equal(m.recoveryHostId, null);
    const listed = await up.vault.context.hosts.call<RecoveryPoint[]>(
      hosts.find((h) => h.name === 'recovery')!.id,
      'replica.listPoints',
      {
        machineId: machine.id,
      },
    );
    assert.deepEqual(listed, []);
  });
});
