import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type RunningVault, startVault } from '../app/start-vault.ts';
import type { Host, Job, Machine, Policy, RecoveryPoint, Site } from '../domain/model.ts';
import * as schemas from './schemas.ts';

let vault: RunningVault;
let dataDir: string;
let admin: string;
let operator: string;
let viewer: string;
let hostA: Host;
let hostB: Host;

type Answer<T = Record<string, unknown>> = { status: number; body: T };

async function call<T = Record<string, unknown>>(
  method: string,
  path: string,
  options: { token?: string | null; body?: unknown; raw?: string } = {},
): Promise<Answer<T>> {
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined || options.raw !== undefined) headers['content-type'] = 'application/json';
  const response = await vault.app.request(`/api/v1${path}`, {
    method,
    headers,
    ...(options.raw !== undefined
      ? { body: options.raw }
      : options.body !== undefined
        ? { body: JSON.stringify(options.body) }
        : {}),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : null) as T };
}

type ErrorBody = { error: { code: string; message: string; details: Record<string, unknown> } };

async function enrolHost(name: string, site: string): Promise<Host> {
  const { body } = await call<{ token: string }>('POST', '/enrolment-tokens', {
    token: admin,
    body: { siteId: site, hostName: name },
  });
  const enrolled = await call<{ hostId: string }>('POST', '/hosts/enrol', {
    token: body.token,
    body: { name, storageFolders: ['/images'] },
  });
  assert.equal(enrolled.status, 201);
  return (await call<Host>('GET', `/hosts/${enrolled.body.hostId}`, { token: admin })).body;
}

async function createMachine(name: string, disks = 1): Promise<Machine> {
  const { status, body } = await call<Machine>('POST', '/machines', {
    token: operator,
    body: {
      name,
      hostId: hostA.id,
      disks: Array.from({ length: disks }, (_, i) => ({
        id: `disk${i}`,
        sizeBytes: 1 << 30,
        source: `/images/${name}-${i}.img`,
      })),
      recoverySettings: { targetName: name, cpus: 2, memoryMiB: 1024, nics: [{ network: 'lan' }] },
    },
  });
  assert.equal(status, 201, JSON.stringify(body));
  return body;
}

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'haven-api-'));
  vault = await startVault({ dataDir, port: 0 });
  admin = vault.adminToken!;
  const token = async (role: string) =>
    (await call<{ token: string }>('POST', '/tokens', { token: admin, body: { name: role, role } })).body
      .token;
  operator = await token('operator');
  viewer = await token('viewer');
  for (const [name, role] of [
    ['dc1', 'primary'],
    ['dc2', 'recovery'],
  ]) {
    const site = await call<Site>('POST', '/sites', {
      token: admin,
      body: { name, role, networkMapping: name === 'dc1' ? { lan: 'lan-dr' } : {} },
    });
    assert.equal(site.status, 201);
  }
  hostA = await enrolHost('kvm-a', 'dc1');
  hostB = await enrolHost('kvm-b', 'dc2');
});

after(async () => {
  await vault.stop();
  await rm(dataDir, { recursive: true, force: true });
});

describe('REST API: authentication and roles', () => {
  it('answers health and the OpenAPI document without a token', async () => {
    assert.equal((await call('GET', '/openapi.json', { token: null })).status, 200);
    const { status, body } = await call('GET', '/health');
    assert.equal(status, 200);
    assert.equal(body.status, 'ok');
    assert.equal(body.database, 'sqlite');
  });

  it('refuses every other endpoint without a token (401)', async () => {
    for (const [method, path] of [
      ['GET', '/machines'],
      ['GET', '/jobs'],
      ['POST', '/policies'],
      ['POST', '/machines/x/failover'],
    ] as const) {
      const { status, body } = await call<ErrorBody>(method, path, { token: null });
      assert.equal(status, 401, `${method} ${path}`);
      assert.equal(body.error.code, 'unauthenticated');
    }
  });

  it('refuses unknown tokens and enrolment tokens used as API tokens', async () => {
    assert.equal((await call('GET', '/machines', { token: 'hvn_not-a-real-token' })).status, 401);
    assert.equal((await call('GET', '/machines', { token: 'hve_abc.def' })).status, 401);
  });

  it('lets a viewer read but not start a failover (403)', async () => {
    const machine = await createMachine('viewer-target');
    assert.equal((await call('GET', `/machines/${machine.id}`, { token: viewer })).status, 200);
    const { status, body } = await call<ErrorBody>('POST', `/machines/${machine.id}/failover`, {
      token: viewer,
      body: { recoveryPoint: { option: 'latest' } },
    });
    assert.equal(status, 403);
    assert.equal(body.error.code, 'forbidden');
    assert.match(body.error.message, /role viewer.*needs role operator/);
  });

  it('keeps admin-only endpoints from operators', async () => {
    const { status } = await call('POST', '/tokens', { token: operator, body: { name: 'x', role: 'admin' } });
    assert.equal(status, 403);
    assert.equal((await call('GET', '/tokens', { token: viewer })).status, 403);
  });
});

describe('REST API: input validation', () => {
  it('answers 400 naming the field for malformed bodies', async () => {
    const missing = await call<ErrorBody>('POST', '/machines', {
      token: operator,
      body: { name: 'no-disks', hostId: hostA.id },
    });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.error.code, 'bad_request');
    assert.equal(missing.body.error.details.field, 'disks');

    const nested = await call<ErrorBody>('POST', '/machines', {
      token: operator,
      body: { name: 'bad-disk', hostId: hostA.id, disks: [{ id: 'd', sizeBytes: -5, source: 'x' }] },
    });
    assert.equal(nested.status, 400);
    assert.equal(nested.body.error.details.field, 'disks.0.sizeBytes');

    const badName = await call<ErrorBody>('POST', '/policies', {
      token: admin,
      body: {
        name: 'Bad Name',
        rpoThresholdSeconds: 60,
        retentionSeconds: 3600,
        appConsistentFrequencySeconds: 0,
      },
    });
    assert.equal(badName.status, 400);
    assert.equal(badName.body.error.details.field, 'name');
  });

  it('answers 400 for a body that is not JSON', async () => {
    const { status, body } = await call<ErrorBody>('POST', '/machines', {
      token: operator,
      raw: '{"name": ',
    });
    assert.equal(status, 400);
    assert.equal(body.error.details.field, 'body');
  });

  it('answers 400 for a custom recovery point without its id', async () => {
    const machine = await createMachine('custom-point');
    const { status, body } = await call<ErrorBody>('POST', `/machines/${machine.id}/failover`, {
      token: operator,
      body: { recoveryPoint: { option: 'custom' } },
    });
    assert.equal(status, 400);
    assert.equal(body.error.details.field, 'recoveryPoint.pointId');
  });
});

describe('REST API: ids, paths and references are checked at the request', () => {
  const register = (name: string, disks: unknown[]) =>
    call<ErrorBody>('POST', '/machines', { token: operator, body: { name, hostId: hostA.id, disks } });

  it('refuses disk ids that are not a safe name, and twice the same id (400 naming the field)', async () => {
    for (const id of ['../../etc/passwd', '.hidden', 'a/b', 'a.b', '']) {
      const { status, body } = await register('bad-id', [{ id, sizeBytes: 4096, source: '/images/x.img' }]);
      assert.equal(status, 400, id);
      assert.equal(body.error.details.field, 'disks.0.id', id);
    }
    const twice = await register('twice', [
      { id: 'disk0', sizeBytes: 4096, source: '/images/a.img' },
      { id: 'disk0', sizeBytes: 4096, source: '/images/b.img' },
    ]);
    assert.equal(twice.status, 400);
    assert.equal(twice.body.error.details.field, 'disks.1.id');
  });

  it('refuses a disk source outside the host’s storage folders, listing them', async () => {
    for (const source of [
      '/etc/passwd',
      '/images/../etc/shadow',
      'images/x.img',
      '/images',
      '/imagesx/y.img',
    ]) {
      const { status, body } = await register('bad-source', [
        { id: 'disk0', sizeBytes: 4096, source: '/images/ok.img' },
        { id: 'disk1', sizeBytes: 4096, source },
      ]);
      assert.equal(status, 400, source);
      assert.equal(body.error.code, 'bad_request');
      assert.equal(body.error.details.field, 'disks.1.source', source);
      assert.deepEqual(body.error.details.allowedFolders, ['/images']);
      assert.match(body.error.message, /inside \/images/);
    }
    assert.equal((await call('GET', '/machines/bad-source', { token: viewer })).status, 404);
    const nested = await register('good-source', [
      { id: 'disk0', sizeBytes: 4096, source: '/images/vm/../good.img' },
    ]);
    assert.equal(nested.status, 201);
  });

  it('refuses a kernel or initrd outside the host’s storage folders (POST and PATCH), naming the field', async () => {
    const settings = (boot: { kernel: string; initrd: string | null }) => ({
      targetName: 'boot-x',
      cpus: 1,
      memoryMiB: 128,
      boot: { ...boot, cmdline: 'console=ttyS0' },
    });
    for (const [boot, field] of [
      [{ kernel: '/images/vmlinuz', initrd: '/etc/shadow' }, 'recoverySettings.boot.initrd'],
      [{ kernel: '/images/../etc/shadow', initrd: null }, 'recoverySettings.boot.kernel'],
      [{ kernel: 'vmlinuz', initrd: '/images/initrd' }, 'recoverySettings.boot.kernel'],
    ] as const) {
      const { status, body } = await call<ErrorBody>('POST', '/machines', {
        token: operator,
        body: {
          name: 'boot-x',
          hostId: hostA.id,
          disks: [{ id: 'disk0', sizeBytes: 4096, source: '/images/boot-x.img' }],
          recoverySettings: settings(boot),
        },
      });
      assert.equal(status, 400, JSON.stringify(boot));
      assert.equal(body.error.details.field, field);
      assert.deepEqual(body.error.details.allowedFolders, ['/images']);
      assert.match(body.error.message, /inside \/images/);
    }
    assert.equal((await call('GET', '/machines/boot-x', { token: viewer })).status, 404);

    const machine = await createMachine('boot-ok');
    const patched = await call<Machine>('PATCH', `/machines/${machine.id}/recovery-settings`, {
      token: operator,
      body: { boot: { kernel: '/images/vmlinuz', initrd: '/images/initrd', cmdline: '' } },
    });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    const refused = await call<ErrorBody>('PATCH', `/machines/${machine.id}/recovery-settings`, {
      token: operator,
      body: { boot: { kernel: '/images/vmlinuz', initrd: '/etc/shadow', cmdline: '' } },
    });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error.details.field, 'recoverySettings.boot.initrd');
    const kept = await call<Machine>('GET', `/machines/${machine.id}`, { token: viewer });
    assert.equal(
      kept.body.recoverySettings.boot?.initrd,
      '/images/initrd',
      'the refused settings were not stored',
    );
  });

  it('refuses an unknown recovery point, or another machine’s, before queuing the job', async () => {
    const { store } = vault.context;
    const now = new Date().toISOString();
    const protect = async (name: string) => {
      const machine = await createMachine(name);
      await store.machines.transition(machine.id, 'unprotected', 'enabling-replication', 'job-x', now);
      await store.machines.transition(machine.id, 'enabling-replication', 'protected', null, now);
      await store.machines.update({ ...(await store.machines.get(machine.id))!, recoveryHostId: hostB.id });
      return machine;
    };
    const mine = await protect('points-a');
    const other = await protect('points-b');
    const point = (machineId: string, id: string) => ({
      id,
      machineId,
      sequence: Number(id.slice(id.lastIndexOf('@') + 1)),
      time: now,
      type: 'crash-consistent' as const,
      groupPointId: null,
      processed: true,
      sizeBytes: 0,
    });
    await store.recoveryPoints.add(point(mine.id, `${mine.id}/disk0@5`));
    await store.recoveryPoints.add(point(other.id, `${other.id}/disk0@7`));
    for (const pointId of [`${mine.id}/disk0@6`, `${other.id}/disk0@7`, '../../x']) {
      const { status, body } = await call<ErrorBody>('POST', `/machines/${mine.id}/test-failover`, {
        token: operator,
        body: { recoveryPoint: { option: 'custom', pointId } },
      });
      assert.equal(status, 400, pointId);
      assert.equal(body.error.details.field, 'recoveryPoint.pointId');
      assert.match(body.error.message, /has no recovery point/);
    }
    assert.equal(
      (await call<Machine>('GET', `/machines/${mine.id}`, { token: viewer })).body.state,
      'protected',
    );
  });

  it('takes a backup file name inside the backups folder, never a path', async () => {
    for (const file of ['../vault.backup', '/etc/cron.d/x', 'a/b.backup', '.hidden']) {
      const { status, body } = await call<ErrorBody>('POST', '/vault/backup', {
        token: admin,
        body: { file },
      });
      assert.equal(status, 400, file);
      assert.equal(body.error.details.field, 'file');
    }
  });
});

describe('REST API: lifecycle refusals', () => {
  it('answers 409 naming the machine, its state and the allowed operations', async () => {
    const machine = await createMachine('web-01');
    const { status, body } = await call<ErrorBody>('POST', `/machines/${machine.id}/failover`, {
      token: operator,
      body: { recoveryPoint: { option: 'latest-processed' } },
    });
    assert.equal(status, 409);
    assert.equal(body.error.code, 'operation_not_allowed');
    assert.match(body.error.message, /Machine 'web-01' is unprotected/);
    assert.equal(body.error.details.machineName, 'web-01');
    assert.equal(body.error.details.state, 'unprotected');
    assert.deepEqual(body.error.details.allowedOperations, ['enable-replication']);
    const commit = await call<ErrorBody>('POST', `/machines/web-01/commit`, { token: operator, body: {} });
    assert.equal(commit.status, 409);
  });

  it('refuses an operation its hosts cannot do (501), leaving the machine as it was', async () => {
    const machine = await createMachine('db-01');
    const policy = (
      await call<{ policies: Policy[] }>('GET', '/policies', { token: viewer })
    ).body.policies.find((p) => !p.builtIn)!;
    const { status, body } = await call<ErrorBody>('POST', `/machines/${machine.id}/enable-replication`, {
      token: operator,
      body: { recoveryHostId: hostB.id, policyId: policy.id },
    });
    assert.equal(status, 501);
    assert.equal(body.error.code, 'not_available');
    // These hosts enrolled without a host agent's data path: nothing reports a disk service.
    assert.match(body.error.message, /Host 'kvm-a' has no disk-service/);
    const after = (await call<Machine>('GET', `/machines/${machine.id}`, { token: viewer })).body;
    assert.equal(after.state, 'unprotected');
    assert.equal(after.currentJobId, null);
  });

  it('refuses enabling replication past the recovery host’s disk limit, naming host, count and limit', async () => {
    const machine = await createMachine('big-01', 3);
    await call('PATCH', `/hosts/${hostB.id}`, { token: admin, body: { maxProtectedDisks: 2 } });
    const { status, body } = await call<ErrorBody>('POST', `/machines/${machine.id}/enable-replication`, {
      token: operator,
      body: { recoveryHostId: hostB.id, policyId: 'default' },
    });
    await call('PATCH', `/hosts/${hostB.id}`, { token: admin, body: { maxProtectedDisks: 60 } });
    assert.equal(status, 409);
    assert.equal(body.error.code, 'limit_exceeded');
    assert.match(body.error.message, /kvm-b/);
    assert.match(body.error.message, /2/);
  });

  it('validates recovery settings before a failover and lists every problem', async () => {
    const machine = await createMachine('app-01');
    // Put the machine in a protected state as replication would (the data path lands later).
    const { store } = vault.context;
    const now = new Date().toISOString();
    assert.ok(
      await store.machines.transition(machine.id, 'unprotected', 'enabling-replication', 'job-x', now),
    );
    assert.ok(await store.machines.transition(machine.id, 'enabling-replication', 'protected', null, now));
    await store.machines.update({ ...(await store.machines.get(machine.id))!, recoveryHostId: hostB.id });
    const bad = await call('PATCH', `/machines/${machine.id}/recovery-settings`, {
      token: operator,
      body: { targetName: 'App_01', memoryMiB: 64, nics: [{ network: 'unmapped-net' }] },
    });
    assert.equal(bad.status, 200);
    const validation = await call<{ valid: boolean; problems: { field: string }[] }>(
      'GET',
      `/machines/${machine.id}/validation`,
      { token: viewer },
    );
    assert.equal(validation.body.valid, false);
    const fields = validation.body.problems.map((p) => p.field).sort();
    assert.ok(fields.includes('recoverySettings.targetName'), fields.join());
    assert.ok(fields.includes('recoverySettings.memoryMiB'), fields.join());
    assert.ok(
      fields.some((f) => f.startsWith('recoverySettings.nics')),
      fields.join(),
    );

    const refused = await call<ErrorBody>('POST', `/machines/${machine.id}/failover`, {
      token: operator,
      body: { recoveryPoint: { option: 'latest' } },
    });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error.code, 'validation_failed');
    assert.equal((refused.body.error.details.problems as unknown[]).length, validation.body.problems.length);

    await call('PATCH', `/machines/${machine.id}/recovery-settings`, {
      token: operator,
      body: { targetName: 'app-01', memoryMiB: 1024, nics: [{ network: 'lan' }] },
    });
    const allowed = await call<ErrorBody>('POST', `/machines/${machine.id}/failover`, {
      token: operator,
      body: { recoveryPoint: { option: 'latest' } },
    });
    // Valid settings: the failover is accepted as a job; with no host agent connected it fails,
    // and the machine goes back to where it was (every step is safe to run again).
    assert.equal(allowed.status, 202, JSON.stringify(allowed.body));
    const jobId = (allowed.body as unknown as Job).id;
    let job: Job | undefined;
    for (let i = 0; i < 200; i++) {
      job = (await call<Job>('GET', `/jobs/${jobId}`, { token: viewer })).body;
      if (job.state === 'failed') break;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(job?.state, 'failed');
    assert.equal((await store.machines.get(machine.id))!.state, 'protected');
    assert.equal((await store.machines.get(machine.id))!.currentJobId, null);
  });
});

describe('REST API: resources', () => {
  it('serves an OpenAPI document describing the endpoints and their roles', async () => {
    const { status, body } = await call<{
      openapi: string;
      paths: Record<string, Record<string, Record<string, unknown>>>;
    }>('GET', '/openapi.json', { token: viewer });
    assert.equal(status, 200);
    assert.equal(body.openapi, '3.1.0');
    const failover = body.paths['/api/v1/machines/{id}/failover']?.post;
    assert.ok(failover, 'failover is documented');
    assert.equal(failover['x-haven-role'], 'operator');
    assert.ok((failover.requestBody as Record<string, unknown>) !== undefined);
    assert.ok(body.paths['/api/v1/health']?.get);
  });

  it('keeps the automatic failback policy fixed (SPEC §3) and validates policies', async () => {
    const { body } = await call<Policy>('GET', '/policies/automatic-failback', { token: viewer });
    assert.equal(body.rpoThresholdSeconds, 15 * 60);
    assert.equal(body.retentionSeconds, 24 * 3600);
    assert.equal(body.appConsistentFrequencySeconds, 3600);
    const edit = await call<ErrorBody>('PATCH', '/policies/automatic-failback', {
      token: admin,
      body: { retentionSeconds: 60 },
    });
    assert.equal(edit.status, 409);
    const invalid = await call<ErrorBody>('POST', '/policies', {
      token: admin,
      body: {
        name: 'short',
        rpoThresholdSeconds: 3600,
        retentionSeconds: 60,
        appConsistentFrequencySeconds: 0,
      },
    });
    assert.equal(invalid.status, 400);
    const good = await call<Policy>('POST', '/policies', {
      token: admin,
      body: {
        name: 'gold',
        rpoThresholdSeconds: 300,
        retentionSeconds: 7200,
        appConsistentFrequencySeconds: 3600,
      },
    });
    assert.equal(good.status, 201);
  });

  it('uses an enrolment token once', async () => {
    const { body } = await call<{ token: string }>('POST', '/enrolment-tokens', {
      token: admin,
      body: { siteId: 'dc1' },
    });
    assert.equal(
      (await call('POST', '/hosts/enrol', { token: body.token, body: { name: 'kvm-c' } })).status,
      201,
    );
    const again = await call<ErrorBody>('POST', '/hosts/enrol', {
      token: body.token,
      body: { name: 'kvm-d' },
    });
    assert.equal(again.status, 401);
    assert.equal(again.body.error.code, 'unauthenticated');
  });

  it('runs a vault backup as a job with steps, and refuses to cancel it once finished', async () => {
    const { status, body } = await call<Job>('POST', '/vault/backup', {
      token: admin,
      body: { file: 'vault.backup' },
    });
    assert.equal(status, 202);
    let job = body;
    for (let i = 0; i < 200 && !['succeeded', 'failed'].includes(job.state); i++) {
      await new Promise((r) => setTimeout(r, 25));
      job = (await call<Job>('GET', `/jobs/${body.id}`, { token: viewer })).body;
    }
    assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
    assert.deepEqual(
      job.steps.map((s) => s.name),
      ['write', 'verify'],
    );
    assert.equal(job.createdBy, 'admin');
    assert.equal(job.output.file, join(dataDir, 'backups', 'vault.backup'));
    assert.equal((job.output.verified as { hosts: number }).hosts, 3);
    const cancel = await call<ErrorBody>('POST', `/jobs/${job.id}/cancel`, { token: operator });
    assert.equal(cancel.status, 409);
  });

  it('PATCH keeps what it was not given (recovery settings, policies, sites, hosts)', async () => {
    const machine = await createMachine('app-07');
    const patched = await call<Machine>('PATCH', `/machines/${machine.id}/recovery-settings`, {
      token: operator,
      body: { cpus: 4 },
    });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.deepEqual(patched.body.recoverySettings, { ...machine.recoverySettings, cpus: 4 });
    const stored = (await call<Machine>('GET', `/machines/${machine.id}`, { token: viewer })).body;
    assert.equal(stored.recoverySettings.nics.length, 1);
    assert.equal(stored.recoverySettings.nics[0]!.network, 'lan');
    assert.equal(stored.recoverySettings.memoryMiB, 1024);

    const policy = (
      await call<Policy>('POST', '/policies', {
        token: admin,
        body: {
          name: 'silver',
          rpoThresholdSeconds: 300,
          retentionSeconds: 7200,
          appConsistentFrequencySeconds: 600,
        },
      })
    ).body;
    const edited = await call<Policy>('PATCH', `/policies/${policy.id}`, {
      token: admin,
      body: { rpoThresholdSeconds: 600 },
    });
    assert.equal(edited.status, 200, JSON.stringify(edited.body));
    assert.deepEqual(
      [
        edited.body.rpoThresholdSeconds,
        edited.body.retentionSeconds,
        edited.body.appConsistentFrequencySeconds,
      ],
      [600, 7200, 600],
    );
    const site = await call<Site>('PATCH', '/sites/dc1', { token: admin, body: { testNetwork: 'dc1-test' } });
    assert.equal(site.status, 200, JSON.stringify(site.body));
    assert.deepEqual(site.body.networkMapping, { lan: 'lan-dr' });
    // No PATCH schema fills in a default for a field the request did not name.
    for (const schema of [
      schemas.updateRecoverySettings,
      schemas.updatePolicy,
      schemas.updateSite,
      schemas.updateHost,
    ]) {
      assert.deepEqual(schema.parse({}), {});
    }
  });

  it('lists recovery points oldest first by sequence: …@1000 after …@999 at the same time', async () => {
    const machine = await createMachine('seq-01');
    const time = '2026-11-01T10:00:00.123Z';
    for (const sequence of [1000, 999]) {
      await vault.context.store.recoveryPoints.add({
        id: `${machine.id}/disk0@${sequence}`,
        machineId: machine.id,
        time,
        sequence,
        type: 'crash-consistent',
        groupPointId: null,
        processed: true,
        sizeBytes: 0,
      });
    }
    const { body } = await call<{ recoveryPoints: RecoveryPoint[] }>(
      'GET',
      `/machines/${machine.id}/recovery-points`,
      { token: viewer },
    );
    assert.deepEqual(
      body.recoveryPoints.map((p) => p.id),
      [`${machine.id}/disk0@999`, `${machine.id}/disk0@1000`],
    );
  });

  it('answers 404 for unknown things', async () => {
    assert.equal((await call('GET', '/machines/nope', { token: viewer })).status, 404);
    assert.equal((await call('GET', '/jobs/nope', { token: viewer })).status, 404);
    assert.equal((await call('GET', '/no-such-endpoint', { token: viewer })).status, 404);
  });
});

describe('REST API: replication history', () => {
  it('answers the samples the vault kept, at the finest resolution covering `since` unless asked', async () => {
    const machine = await createMachine('history');
    const now = Date.now();
    const ago = (seconds: number) => new Date(now - seconds * 1000).toISOString();
    for (const seconds of [2 * 86_400, 3 * 3600, 1800, 25, 5]) {
      await vault.context.store.replicationHistory.record(machine.id, {
        at: ago(seconds),
        throughputBytesPerSec: seconds,
        pendingBytes: 4096,
        rpoSeconds: seconds === 5 ? null : 3,
      });
    }
    type History = {
      resolutionSeconds: number;
      since: string;
      samples: { at: string; rpoSeconds: number | null }[];
    };
    const lastHour = await call<History>('GET', `/machines/${machine.name}/replication-history`, {
      token: viewer,
    });
    assert.equal(lastHour.status, 200, JSON.stringify(lastHour.body));
    assert.equal(lastHour.body.resolutionSeconds, 10);
    assert.deepEqual(
      lastHour.body.samples.map((s) => s.rpoSeconds),
      [3, 3, null],
      'the last hour in 10 s samples, oldest first',
    );
    const week = await call<History>(
      'GET',
      `/machines/${machine.id}/replication-history?since=${encodeURIComponent(ago(7 * 86_400))}`,
      { token: viewer },
    );
    assert.equal(week.body.resolutionSeconds, 600);
    assert.ok(week.body.samples.length >= 3 && week.body.samples.length <= 5, JSON.stringify(week.body));
    const asked = await call<History>(
      'GET',
      `/machines/${machine.id}/replication-history?resolution=60&since=${encodeURIComponent(ago(4 * 3600))}`,
      { token: viewer },
    );
    assert.equal(asked.body.resolutionSeconds, 60);
    assert.ok(asked.body.samples.length >= 3);

    const bad = await call<ErrorBody>('GET', `/machines/${machine.id}/replication-history?resolution=30`, {
      token: viewer,
    });
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.body.error), /resolution/);
    const badSince = await call<ErrorBody>('GET', `/machines/${machine.id}/replication-history?since=1h`, {
      token: viewer,
    });
    assert.equal(badSince.status, 400);
    const missing = await call<ErrorBody>('GET', '/machines/no-such/replication-history', { token: viewer });
    assert.equal(missing.status, 404);
  });
});
