import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type Embedded, startEmbedded } from '../../app/start-embedded.ts';
import { selectRecoveryPoint } from '../../domain/index.ts';
import { isTerminalJobState } from '../../domain/job-states.ts';
import type { Job, Machine, RecoveryPoint } from '../../domain/model.ts';
import { createSparseImage } from '../../storage/index.ts';
import { embeddedApi } from '../../testing/embedded-api.ts';
import { until as waitUntil } from '../../testing/until.ts';
import type { ConsistencyGroup, GroupCut } from './index.ts';
import { GroupScheduler } from './index.ts';

const run = promisify(execFile);
let dir: string;
let up: Embedded;
const api = embeddedApi(() => up);
const until = <T>(what: string, probe: () => Promise<T | undefined | false>) =>
  waitUntil(what, probe, { timeoutMs: 60_000 });
const size = 4 << 20;

async function finished(jobId: string): Promise<Job> {
  return until(`job ${jobId}`, async () => {
    const { body } = await api<Job>('GET', `/jobs/${jobId}`);
    return isTerminalJobState(body.state) ? body : undefined;
  });
}

async function machine(name: string, protect: boolean): Promise<Machine> {
  const image = join(dir, 'images', `${name}.img`);
  await mkdir(join(dir, 'images'), { recursive: true });
  await createSparseImage(image, size);
  const created = await api<Machine>('POST', '/machines', {
    name,
    hostId: 'primary',
    disks: [{ id: 'disk0', sizeBytes: size, source: image }],
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  if (!protect) return created.body;
  const started = await api<Job>('POST', `/machines/${created.body.id}/enable-replication`, {
    recoveryHostId: 'recovery',
    policyId: 'grouped',
  });
  assert.equal(started.status, 202, JSON.stringify(started.body));
  const job = await finished(started.body.id);
  assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
  return (await api<Machine>('GET', `/machines/${created.body.id}`)).body;
}

async function points(m: Machine): Promise<RecoveryPoint[]> {
  const { body } = await api<{ recoveryPoints: RecoveryPoint[] }>('GET', `/machines/${m.id}/recovery-points`);
  return body.recoveryPoints;
}

/** Waits until every machine's catalog holds a point of the cut. */
function pointsOfCut(ms: Machine[], groupPointId: string): Promise<RecoveryPoint[]> {
  return until(`points of cut ${groupPointId} on every member`, async () => {
    const found = await Promise.all(
      ms.map(async (m) => (await points(m)).find((p) => p.groupPointId === groupPointId)),
    );
    return found.every((p) => p !== undefined) ? (found as RecoveryPoint[]) : undefined;
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-groups-'));
  up = await startEmbedded({ dataDir: dir, port: 0, senderPollMs: 25, monitorIntervalMs: 200, demo: false });
  await until('both hosts connected with replication endpoints', async () => {
    const { body } = await api<{ hosts: { status: string; replicationFingerprint: string | null }[] }>(
      'GET',
      '/hosts',
    );
    return (
      body.hosts.length === 2 && body.hosts.every((h) => h.replicationFingerprint && h.status === 'connected')
    );
  });
  const policy = await api('POST', '/policies', {
    name: 'grouped',
    rpoThresholdSeconds: 300,
    retentionSeconds: 3600,
    appConsistentFrequencySeconds: 300,
  });
  assert.equal(policy.status, 201, JSON.stringify(policy.body));
});

after(async () => {
  await up?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('consistency groups through the vault', () => {
  let a: Machine;
  let b: Machine;
  let loose: Machine;
  let crashCut: string;

  it('refuses groups whose members could not share points, naming the problem', async () => {
    [a, b] = await Promise.all([machine('db-01', true), machine('app-01', true)]);
    loose = await machine('loose-01', false);

    const unknown = await api<{ error: { code: string; message: string } }>('POST', '/groups', {
      name: 'shop',
      machineIds: [a.id, 'no-such-machine'],
    });
    assert.equal(unknown.status, 404);
    assert.match(unknown.body.error.message, /no-such-machine/);

    const unprotected = await api<{ error: { code: string; message: string } }>('POST', '/groups', {
      name: 'shop',
      machineIds: [a.id, loose.name],
    });
    assert.equal(unprotected.body.error.code, 'operation_not_allowed');
    assert.match(unprotected.body.error.message, /loose-01.*not protected/);

    const tooMany = await api<{ error: { code: string; message: string } }>('POST', '/groups', {
      name: 'shop',
      machineIds: Array.from({ length: 17 }, () => a.id),
    });
    assert.equal(tooMany.body.error.code, 'limit_exceeded');
    assert.match(tooMany.body.error.message, /17 machines.*at most 16/);

    // Two members that differ: another recovery host, then another OS family (set on the record).
    const { store } = up.vault.context;
    await store.machines.update({ ...loose, recoveryHostId: 'elsewhere' });
    const otherHost = await api<{ error: { code: string; message: string } }>('POST', '/groups', {
      name: 'shop',
      machineIds: [a.id, loose.id],
    });
    assert.equal(otherHost.body.error.code, 'conflict');
    assert.match(otherHost.body.error.message, /share a recovery host.*'loose-01' to host 'elsewhere'/);
    await store.machines.update({ ...loose, recoveryHostId: a.recoveryHostId, osFamily: 'windows' });
    const otherOs = await api<{ error: { code: string; message: string } }>('POST', '/groups', {
      name: 'shop',
      machineIds: [a.id, loose.id],
    });
    assert.equal(otherOs.body.error.code, 'conflict');
    assert.match(otherOs.body.error.message, /share an OS family.*'loose-01' is windows/);

    const { body: groups } = await api<{ groups: ConsistencyGroup[] }>('GET', '/groups');
    assert.deepEqual(groups.groups, [], 'no refused group left any machine in a group');
  });

  it('creates a group, adds and removes members, takes a cut through the API', async () => {
    const created = await api<ConsistencyGroup>('POST', '/groups', { name: 'shop', machineIds: [a.name] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const added = await api<ConsistencyGroup>('POST', '/groups/shop/members', { machineId: b.id });
    assert.equal(added.status, 200, JSON.stringify(added.body));
    assert.deepEqual(added.body.machineNames.sort(), ['app-01', 'db-01']);
    assert.equal((await api<Machine>('GET', `/machines/${b.id}`)).body.groupId, 'shop');
    const taken = await api<{ error: { message: string } }>('POST', '/groups', {
      name: 'other',
      machineIds: [b.id],
    });
    assert.equal(taken.status, 409);
    assert.match(taken.body.error.message, /belongs to group 'shop'/);
    assert.equal((await api('DELETE', `/groups/shop/members/${b.name}`)).status, 204);
    assert.deepEqual((await api<ConsistencyGroup>('GET', '/groups/shop')).body.machineNames, ['db-01']);
    assert.equal((await api('POST', '/groups/shop/members', { machineId: b.name })).status, 200);

    await run('qemu-io', ['-f', 'raw', a.disks[0]!.nbdUri!, '-c', 'write -P 0x11 0 64k', '-c', 'flush']);
    const cut = await api<GroupCut>('POST', '/groups/shop/points');
    assert.equal(cut.status, 201, JSON.stringify(cut.body));
    assert.equal(cut.body.type, 'crash-consistent');
    crashCut = cut.body.groupPointId;
    const shared = await pointsOfCut([a, b], crashCut);
    assert.deepEqual(
      shared.map((p) => p.machineId),
      [a.id, b.id],
    );
    assert.equal((await api('GET', '/groups/nope')).status, 404);
  });

  it('the scheduler takes an app-consistent cut (hook frozen and thawed on every member) and crash cuts', async () => {
    const log = join(dir, 'hook.log');
    const hook = join(dir, 'hook.sh');
    await writeFile(hook, `#!/bin/sh\necho "$1 $HAVEN_MACHINE_NAME" >> ${log}\n`);
    await chmod(hook, 0o755);
    const scheduler = new GroupScheduler(up.vault.context, {
      groupCutIntervalMs: 60_000,
      appConsistencyHook: hook,
      tickMs: 50,
    });
    // First look: the app-consistent cut is due (never taken); the next look: the crash cut.
    await scheduler.runOnce();
    await scheduler.runOnce();
    await scheduler.stop();
    const lines = (await readFile(log, 'utf8')).trim().split('\n').sort();
    assert.deepEqual(lines, ['freeze app-01', 'freeze db-01', 'thaw app-01', 'thaw db-01']);

    const app = await until('an app-consistent point with a group id on every member', async () => {
      const [pa, pb] = await Promise.all([points(a), points(b)]);
      const appA = pa.filter((p) => p.type === 'app-consistent' && p.groupPointId !== null);
      const match = appA.find((p) =>
        pb.some((q) => q.type === 'app-consistent' && q.groupPointId === p.groupPointId),
      );
      return match;
    });
    assert.notEqual(app.groupPointId, crashCut);
    const crash = await until('a scheduled crash-consistent cut on both members', async () => {
      const [pa, pb] = await Promise.all([points(a), points(b)]);
      return pa.find(
        (p) =>
          p.type === 'crash-consistent' &&
          p.groupPointId !== null &&
          p.groupPointId !== crashCut &&
          // The vault's own scheduler may also have cut earlier: the one asked for here comes after the app cut.
          Date.parse(p.time) >= Date.parse(app.time) &&
          pb.some((q) => q.groupPointId === p.groupPointId),
      );
    });
    assert.equal(crash.type, 'crash-consistent');
    const alerts = await api<{ alerts: { key: string; clearedAt: string | null }[] }>('GET', '/alerts');
    assert.equal(
      alerts.body.alerts.filter((x) => x.clearedAt === null && /app-consistent|group-cut/.test(x.key)).length,
      0,
    );
  });

  it("selects, over every member's catalog, a latest multi-machine point that all members share", async () => {
    const catalog = [...(await points(a)), ...(await points(b))];
    for (const option of ['latest-multi-machine-processed', 'latest-multi-machine-app-consistent'] as const) {
      const { point } = selectRecoveryPoint(catalog, a, { option, members: [a, b] });
      assert.ok(point.groupPointId, option);
      assert.ok(
        catalog.some((q) => q.machineId === b.id && q.groupPointId === point.groupPointId),
        option,
      );
      if (option === 'latest-multi-machine-app-consistent') assert.equal(point.type, 'app-consistent');
    }
  });

  it('fails one member over to the latest multi-machine processed point, shared by the other member', async () => {
    const started = await api<Job>('POST', `/machines/${a.id}/failover`, {
      recoveryPoint: { option: 'latest-multi-machine-processed' },
      shutdownSource: false,
    });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const job = await finished(started.body.id);
    assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
    const chosen = job.output.recoveryPoint as { id: string };
    const point = (await points(a)).find((p) => p.id === chosen.id);
    assert.ok(point?.groupPointId, `chosen point ${chosen.id} belongs to a cut`);
    assert.ok((await points(b)).some((p) => p.groupPointId === point.groupPointId));
  });
});
