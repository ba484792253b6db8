import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { DrillCheck, DrillRun, DrillSchedule } from '../domain/drill.ts';
import {
  type Alert,
  type Host,
  type Job,
  type JobStep,
  type Machine,
  type Policy,
  pendingStep,
  type RecoveryPlan,
  type RecoveryPoint,
  type ScriptRunRecord,
  type Site,
  startedScriptRun,
} from '../domain/model.ts';
import { bucketStart, REPLICATION_TIERS, type ReplicationFigure } from '../domain/replication-history.ts';
import { HavenError } from '../errors/index.ts';
import { type PostgresCluster, startPostgresCluster } from '../testing/postgres-cluster.ts';
import { staticNic } from '../testing/sample-nic.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import { openStore, restoreStore, type Store, type StoreLocation } from './index.ts';
import { migrations } from './migrations/migration-provider.ts';

/** A fresh, empty database location for one test. */
type LocationFactory = () => Promise<StoreLocation>;

const t0 = '2026-01-01T00:00:00.000Z';
const at = (seconds: number) => new Date(Date.parse(t0) + seconds * 1000).toISOString();

/** Makes test records: a fresh copy of the defaults, with any fields overridden. */
function records<T>(defaults: T): (overrides?: Partial<T>) => T {
  return (overrides = {}) => ({ ...structuredClone(defaults), ...overrides });
}

const site = records<Site>({
  id: 'site-a',
  name: 'primary-dc',
  role: 'primary',
  networkMapping: { 'lan-a': 'lan-b', 'dmz ü': 'dmz-2' },
  testNetwork: null,
  createdAt: t0,
});

const host = records<Host>({
  id: 'host-1',
  name: 'kvm-1',
  siteId: 'site-a',
  status: 'pending',
  replicationAddress: null,
  replicationFingerprint: 'AB:CD',
  maxProtectedDisks: 64,
  capabilities: ['disk-service', 'hypervisor:qemu'],
  storageFolders: ['/var/lib/vm'],
  version: null,
  lastHeartbeatAt: null,
  enrolledAt: t0,
});

const machine = records<Machine>({
  id: 'vm-1',
  name: 'web-1',
  primaryHostId: 'host-1',
  recoveryHostId: 'host-2',
  activeHostId: 'host-1',
  policyId: null,
  groupId: null,
  osFamily: 'linux',
  state: 'protected',
  health: 'healthy',
  disks: [
    { id: 'disk0', sizeBytes: 5 * 2 ** 40, source: '/var/lib/vm/web-1.qcow2', hasSnapshots: false },
    { id: 'disk1', sizeBytes: 1024, source: '/var/lib/vm/web-1-data.raw', hasSnapshots: true },
  ],
  recoverySettings: {
    targetName: 'web-1-dr',
    cpus: 2,
    memoryMiB: 2048,
    nics: [staticNic('lan-a'), { network: 'dmz', recoveryNetwork: 'dmz-2', mac: null, ip: { mode: 'dhcp' } }],
  },
  currentJobId: null,
  replication: null,
  runtime: { test: null, failover: null },
  originalExists: true,
  createdAt: t0,
  updatedAt: t0,
});

function step(index: number, name: string): JobStep {
  return pendingStep(index, name, `Step ${name}`);
}

const job = records<Job>({
  id: 'job-1',
  kind: 'failover',
  targetType: 'machine',
  targetId: 'vm-1',
  state: 'queued',
  progress: 0,
  input: { pointId: 'rp-1', nested: { list: [1, 'two', null, true] } },
  output: {},
  createdBy: 'token-admin',
  createdAt: t0,
  startedAt: null,
  finishedAt: null,
  error: null,
  cancelRequested: false,
  steps: [step(0, 'validate'), step(1, 'stop-replication'), step(2, 'start-vm')],
});

const alert = records<Alert>({
  id: 'alert-1',
  key: 'host-unreachable:host-1',
  severity: 'warning',
  message: 'host kvm-1 is unreachable',
  subjectType: 'host',
  subjectId: 'host-1',
  raisedAt: t0,
  clearedAt: null,
  acknowledged: null,
});

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof HavenError, `expected a HavenError, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  });
}

/** The repository suite, defined once and run against each dialect. */
function storeSuite(expectedDialect: Store['dialect'], freshLocation: LocationFactory): void {
  /** Opens a store on a fresh database, runs `body`, closes every store it opened. */
  async function withStore(body: (store: Store, location: StoreLocation) => Promise<void>): Promise<void> {
    const location = await freshLocation();
    const store = await openStore(location);
    try {
      await body(store, location);
    } finally {
      await store.close();
    }
  }

  it('keeps access views, lists the open ones, closes each once with the first reason', () =>
    withStore(async (store) => {
      const view = (id: string, machineId: string, hostId: string) => ({
        id,
        machineId,
        machineName: `vm ${machineId}`,
        pointId: `${machineId}/disk0@3`,
        pointTime: at(1),
        hostId,
        writable: id === 'v2',
        openedBy: 'alice',
        openedAt: at(id === 'v1' ? 2 : 3),
        expiresAt: at(600),
        disks: [
          { diskId: 'disk0', sizeBytes: 1 << 30, uri: 'nbds://v@h:1/v.disk0', unixUri: 'nbd+unix:///v' },
        ],
        closedAt: null,
        closedReason: null,
      });
      await store.accessViews.add(view('v1', 'm1', 'h1'));
      await store.accessViews.add(view('v2', 'm2', 'h1'));
      assert.deepEqual(await store.accessViews.get('v2'), view('v2', 'm2', 'h1'));
      assert.deepEqual(
        (await store.accessViews.list({ open: true, hostId: 'h1' })).map((v) => v.id),
        ['v1', 'v2'],
      );
      assert.equal(await store.accessViews.close('v1', at(10), { kind: 'expired' }), true);
      assert.equal(await store.accessViews.close('v1', at(11), { kind: 'deleted', by: 'bob' }), false);
      assert.deepEqual(
        { ...(await store.accessViews.get('v1')), disks: [] },
        { ...view('v1', 'm1', 'h1'), disks: [], closedAt: at(10), closedReason: { kind: 'expired' } },
      );
      assert.deepEqual(
        (await store.accessViews.list({ open: true })).map((v) => v.id),
        ['v2'],
      );
      assert.deepEqual(
        (await store.accessViews.list({ machineId: 'm1' })).map((v) => v.id),
        ['v1'],
      );
      assert.equal(await store.accessViews.close('v2', at(12), { kind: 'deleted', by: 'bob' }), true);
      assert.deepEqual((await store.accessViews.get('v2'))?.closedReason, { kind: 'deleted', by: 'bob' });
    }));

  it('opens the configured dialect', () =>
    withStore(async (store) => {
      assert.equal(store.dialect, expectedDialect);
    }));

  it('sites: create, read, list, update, JSON round trip, conflicts', () =>
    withStore(async (store) => {
      await store.sites.create(site());
      await store.sites.create(
        site({ id: 'site-b', name: 'dr-dc', role: 'recovery', testNetwork: 'isolated' }),
      );
      assert.deepEqual(await store.sites.get('site-a'), site());
      assert.deepEqual(
        await store.sites.getByName('dr-dc'),
        site({
          id: 'site-b',
          name: 'dr-dc',
          role: 'recovery',
          testNetwork: 'isolated',
        }),
      );
      assert.equal(await store.sites.get('nope'), undefined);
      assert.deepEqual(
        (await store.sites.list()).map((s) => s.name),
        ['dr-dc', 'primary-dc'],
      );
      const updated = site({ networkMapping: {}, testNetwork: 'test-net', name: 'renamed' });
      await store.sites.update(updated);
      assert.deepEqual(await store.sites.get('site-a'), updated);
      await rejectsWith(store.sites.create(site({ id: 'site-c', name: 'dr-dc' })), 'conflict');
      await rejectsWith(store.sites.update(site({ id: 'missing', name: 'x' })), 'not_found');
      await rejectsWith(store.sites.update(site({ name: 'dr-dc' })), 'conflict');
    }));

  it('hosts: create with credential, read, heartbeat, update, delete', () =>
    withStore(async (store) => {
      await store.sites.create(site());
      await store.hosts.create(host(), 'sha256:abc');
      await store.hosts.create(host({ id: 'host-2', name: 'kvm-2', capabilities: [] }), 'sha256:def');
      assert.deepEqual(await store.hosts.get('host-1'), host());
      assert.deepEqual(
        await store.hosts.getByName('kvm-2'),
        host({ id: 'host-2', name: 'kvm-2', capabilities: [] }),
      );
      assert.equal(await store.hosts.credentialHash('host-1'), 'sha256:abc');
      assert.equal(await store.hosts.credentialHash('nope'), undefined);
      assert.deepEqual(
        (await store.hosts.list()).map((h) => h.id),
        ['host-1', 'host-2'],
      );
      await store.hosts.recordHeartbeat('host-1', at(30));
      assert.equal((await store.hosts.get('host-1'))?.lastHeartbeatAt, at(30));
      const connected = host({
        status: 'connected',
        replicationAddress: '10.0.0.1:10809',
        version: '0.1.0',
        lastHeartbeatAt: at(60),
        maxProtectedDisks: 8,
      });
      await store.hosts.update(connected);
      assert.deepEqual(await store.hosts.get('host-1'), connected);
      assert.equal(await store.hosts.credentialHash('host-1'), 'sha256:abc', 'update keeps the credential');
      await rejectsWith(
        store.hosts.create(host({ id: 'host-3', name: 'kvm-3', siteId: 'no-site' }), 'h'),
        'not_found',
      );
      await rejectsWith(store.hosts.create(host({ id: 'host-3' }), 'h'), 'conflict');
      await rejectsWith(store.hosts.recordHeartbeat('nope', at(1)), 'not_found');
      await store.hosts.delete('host-2');
      assert.equal(await store.hosts.get('host-2'), undefined);
    }));

  it('enrolment tokens: single use, expiry, concurrent consumers', () =>
    withStore(async (store) => {
      await store.sites.create(site());
      const token = {
        id: 'enr-1',
        secretHash: 'sha256:secret',
        siteId: 'site-a',
        hostName: 'kvm-9',
        createdBy: 'token-admin',
        createdAt: t0,
        expiresAt: at(3600),
        usedAt: null,
        usedByHostId: null,
      };
      await store.enrolments.create(token);
      await store.enrolments.create({ ...token, id: 'enr-2', hostName: null, createdAt: at(1) });
      await store.enrolments.create({ ...token, id: 'enr-3', createdAt: at(2) });
      assert.deepEqual(await store.enrolments.get('enr-1'), token);

      assert.equal(await store.enrolments.consume('enr-1', 'host-9', at(10)), true);
      assert.equal(await store.enrolments.consume('enr-1', 'host-10', at(11)), false, 'second use refused');
      assert.deepEqual(await store.enrolments.get('enr-1'), {
        ...token,
        usedAt: at(10),
        usedByHostId: 'host-9',
      });

      assert.equal(
        await store.enrolments.consume('enr-2', 'host-9', at(3600)),
        false,
        'expired at expiresAt',
      );
      assert.equal(await store.enrolments.consume('missing', 'host-9', at(1)), false);

      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => store.enrolments.consume('enr-3', `host-${i}`, at(20))),
      );
      assert.equal(results.filter(Boolean).length, 1, 'exactly one concurrent consumer wins');
      const winner = results.indexOf(true);
      assert.equal((await store.enrolments.get('enr-3'))?.usedByHostId, `host-${winner}`);

      assert.deepEqual(
        (await store.enrolments.list()).map((t) => t.id),
        ['enr-3', 'enr-2', 'enr-1'],
      );
    }));

  it('servers: settings and devices kept; enrolment tokens single use, expiring, replaced by a newer one', () =>
    withStore(async (store) => {
      await store.sites.create(site());
      await store.hosts.create(host(), 'h');
      await store.hosts.create(host({ id: 'host-2', name: 'kvm-2' }), 'h');
      const server = machine({
        state: 'unprotected',
        server: { writeBehind: null, nbdTimeoutSeconds: 30, enrolledAt: null },
        disks: [
          {
            id: 'disk0',
            sizeBytes: 1 << 30,
            source: '/dev/sda',
            serverDevice: '/dev/sda',
            hasSnapshots: false,
          },
        ],
      });
      await store.machines.create(server);
      assert.deepEqual(await store.machines.get('vm-1'), server);
      const enrolled = { ...server, server: { ...server.server!, enrolledAt: at(5) } };
      await store.machines.update(enrolled);
      assert.deepEqual((await store.machines.get('vm-1'))?.server, enrolled.server);
      const withBmc = {
        ...enrolled,
        server: {
          ...enrolled.server,
          bmc: { protocol: 'ipmi' as const, address: '10.0.9.1', port: 623, user: 'haven' },
        },
      };
      await store.machines.update(withBmc);
      assert.deepEqual((await store.machines.get('vm-1'))?.server, withBmc.server);
      assert.equal(await store.serverBmcPasswords.get('vm-1'), undefined);
      await store.serverBmcPasswords.set('vm-1', 'first', at(6));
      await store.serverBmcPasswords.set('vm-1', 'second', at(7));
      assert.equal(await store.serverBmcPasswords.get('vm-1'), 'second', 'set replaces');
      await store.serverBmcPasswords.delete('vm-1');
      assert.equal(await store.serverBmcPasswords.get('vm-1'), undefined);
      await store.serverBmcPasswords.set('vm-1', 'kept', at(8));

      const token = {
        id: 'srv-1',
        secretHash: 'sha256:secret',
        machineId: 'vm-1',
        createdBy: 'token-admin',
        createdAt: t0,
        expiresAt: at(3600),
        usedAt: null,
        replacedAt: null,
      };
      await store.serverEnrolments.issue(token);
      assert.deepEqual(await store.serverEnrolments.get('srv-1'), token);
      assert.equal(await store.serverEnrolments.consume('srv-1', at(3600)), false, 'expired at expiresAt');
      await store.serverEnrolments.issue({ ...token, id: 'srv-2', createdAt: at(1) });
      assert.equal((await store.serverEnrolments.get('srv-1'))?.replacedAt, at(1), 'the older one dies');
      assert.equal(
        await store.serverEnrolments.consume('srv-1', at(2)),
        false,
        'a replaced token is refused',
      );
      const results = await Promise.all(
        Array.from({ length: 8 }, () => store.serverEnrolments.consume('srv-2', at(20))),
      );
      assert.equal(results.filter(Boolean).length, 1, 'exactly one concurrent consumer wins');
      assert.equal((await store.serverEnrolments.get('srv-2'))?.usedAt, at(20));
      await store.serverEnrolments.issue({ ...token, id: 'srv-3', createdAt: at(30) });
      assert.equal(
        (await store.serverEnrolments.get('srv-2'))?.replacedAt,
        null,
        'a used token stays as used',
      );
      await rejectsWith(
        store.serverEnrolments.issue({ ...token, id: 'srv-4', machineId: 'no-machine' }),
        'not_found',
      );
      await store.machines.delete('vm-1');
      assert.equal(await store.serverEnrolments.get('srv-3'), undefined, 'gone with its machine');
    }));

  it('api tokens: lookup by hash, list without hashes, touch, count, delete', () =>
    withStore(async (store) => {
      const admin = { id: 'tok-1', name: 'root', role: 'admin' as const, createdAt: t0, lastUsedAt: null };
      await store.tokens.create({ ...admin, secretHash: 'h1' });
      await store.tokens.create({ ...admin, id: 'tok-2', name: 'ops', role: 'operator', secretHash: 'h2' });
      await store.tokens.create({ ...admin, id: 'tok-3', name: 'root2', createdAt: at(1), secretHash: 'h3' });
      assert.deepEqual(await store.tokens.getBySecretHash('h1'), { ...admin, secretHash: 'h1' });
      assert.equal(await store.tokens.getBySecretHash('nope'), undefined);
      const listed = await store.tokens.list();
      assert.deepEqual(
        listed.map((t) => t.id),
        ['tok-1', 'tok-2', 'tok-3'],
      );
      assert.ok(
        listed.every((t) => !('secretHash' in t)),
        'list never exposes secret hashes',
      );
      await store.tokens.touch('tok-1', at(5));
      assert.equal((await store.tokens.getBySecretHash('h1'))?.lastUsedAt, at(5));
      assert.equal(await store.tokens.countByRole('admin'), 2);
      assert.equal(await store.tokens.countByRole('viewer'), 0);
      await store.tokens.delete('tok-3');
      assert.equal(await store.tokens.countByRole('admin'), 1);
      await rejectsWith(store.tokens.create({ ...admin, id: 'tok-4', secretHash: 'h2' }), 'conflict');
    }));

  it('policies: CRUD and boolean round trip', () =>
    withStore(async (store) => {
      const policy: Policy = {
        id: 'pol-1',
        name: 'default',
        rpoThresholdSeconds: 300,
        retentionSeconds: 86_400,
        appConsistentFrequencySeconds: 0,
        builtIn: false,
        createdAt: t0,
      };
      const builtIn = { ...policy, id: 'pol-0', name: 'failback', builtIn: true };
      await store.policies.create(policy);
      await store.policies.create(builtIn);
      assert.deepEqual(await store.policies.get('pol-1'), policy);
      assert.deepEqual(await store.policies.getByName('failback'), builtIn);
      assert.deepEqual(await store.policies.list(), [policy, builtIn]);
      const changed = {
        ...policy,
        rpoThresholdSeconds: 60,
        appConsistentFrequencySeconds: 3600,
        builtIn: true,
      };
      await store.policies.update(changed);
      assert.deepEqual(await store.policies.get('pol-1'), changed);
      await rejectsWith(store.policies.update({ ...policy, id: 'nope' }), 'not_found');
      await store.policies.delete('pol-1');
      assert.equal(await store.policies.get('pol-1'), undefined);
    }));

  it('machines: JSON round trip, filters, update leaves state and health alone, delete', () =>
    withStore(async (store) => {
      const m1 = machine();
      const m2 = machine({
        id: 'vm-2',
        name: 'db-1',
        primaryHostId: 'host-3',
        activeHostId: 'host-3',
        recoveryHostId: null,
        state: 'unprotected',
        originalExists: false,
        disks: [],
      });
      const m3 = machine({ id: 'vm-3', name: 'app-1', activeHostId: 'host-2', state: 'failed-over' });
      for (const m of [m1, m2, m3]) await store.machines.create(m);
      assert.deepEqual(await store.machines.get('vm-1'), m1);
      assert.deepEqual(await store.machines.getByName('db-1'), m2);
      assert.equal(await store.machines.get('nope'), undefined);
      const names = async (filter?: Parameters<Store['machines']['list']>[0]) =>
        (await store.machines.list(filter)).map((m) => m.name);
      assert.deepEqual(await names(), ['app-1', 'db-1', 'web-1']);
      assert.deepEqual(await names({ state: 'protected' }), ['web-1']);
      assert.deepEqual(await names({ hostId: 'host-2' }), ['app-1', 'web-1'], 'recovery or active host');
      assert.deepEqual(await names({ hostId: 'host-3' }), ['db-1']);
      assert.deepEqual(await names({ limit: 2 }), ['app-1', 'db-1']);
      assert.deepEqual(await names({ limit: 1, offset: 1 }), ['db-1']);
      assert.deepEqual(await names({ offset: 2 }), ['web-1']);

      const edited = {
        ...m1,
        health: 'critical' as const,
        originalExists: false,
        disks: [m1.disks[0]!],
        updatedAt: at(9),
        state: 'failed-over' as const,
        currentJobId: 'job-x',
      };
      await store.machines.update(edited);
      assert.deepEqual(await store.machines.get('vm-1'), {
        ...edited,
        state: 'protected',
        currentJobId: null,
        health: m1.health,
      });
      await rejectsWith(store.machines.update(machine({ id: 'nope', name: 'nope' })), 'not_found');
      await rejectsWith(store.machines.create(machine({ id: 'vm-9' })), 'conflict');

      assert.equal(await store.machines.countProtectedDisks('host-2'), 1 + 2);
      assert.equal(await store.machines.countProtectedDisks('host-3'), 0);

      await store.machines.delete('vm-2');
      assert.equal(await store.machines.get('vm-2'), undefined);
    }));

  it('machines: the source fence is written only by its own method, so a plain update cannot undo it', () =>
    withStore(async (store) => {
      await store.machines.create(machine());
      const stale = (await store.machines.get('vm-1'))!;
      assert.equal(stale.sourceFence, undefined, 'no failover, no source fence');
      const unverified = {
        verified: false as const,
        hostId: 'host-1',
        vmName: 'web-1',
        reason: 'the source host is unreachable',
        jobId: 'job-1',
        since: at(1),
        attempts: 0,
        lastAttemptAt: null,
      };
      await store.machines.recordSourceFence('vm-1', unverified);
      // A job saving the machine it read before keeps the fence recorded meanwhile.
      await store.machines.update({ ...stale, health: 'critical', updatedAt: at(2) });
      assert.deepEqual((await store.machines.get('vm-1'))?.sourceFence, unverified);
      const verified = {
        verified: true as const,
        hostId: 'host-1',
        vmName: 'web-1',
        state: 'shut-off' as const,
        jobId: 'job-1',
        fencedAt: at(3),
        by: 'host-returned' as const,
      };
      await store.machines.recordSourceFence('vm-1', verified);
      assert.deepEqual((await store.machines.get('vm-1'))?.sourceFence, verified);
      await store.machines.recordSourceFence('vm-1', null);
      assert.equal((await store.machines.get('vm-1'))?.sourceFence, undefined);
    }));

  it('machines: transition is a compare-and-set on state, recording the current job', () =>
    withStore(async (store) => {
      await store.machines.create(machine());
      assert.equal(
        await store.machines.transition('vm-1', 'failed-over', 'committing', 'job-1', at(1)),
        false,
      );
      assert.equal(
        (await store.machines.get('vm-1'))?.state,
        'protected',
        'a failed transition changes nothing',
      );
      assert.equal(
        await store.machines.transition('vm-1', 'protected', 'failing-over', 'job-1', at(1)),
        true,
      );
      let m = await store.machines.get('vm-1');
      assert.equal(m?.state, 'failing-over');
      assert.equal(m?.currentJobId, 'job-1');
      assert.equal(m?.updatedAt, at(1));
      // A second operator still believing the machine is protected loses.
      assert.equal(
        await store.machines.transition('vm-1', 'protected', 'enabling-replication', 'job-2', at(2)),
        false,
      );
      assert.equal((await store.machines.get('vm-1'))?.currentJobId, 'job-1');
      // The job ends: stable state, no current job.
      assert.equal(await store.machines.transition('vm-1', 'failing-over', 'failed-over', null, at(3)), true);
      m = await store.machines.get('vm-1');
      assert.equal(m?.state, 'failed-over');
      assert.equal(m?.currentJobId, null);
      assert.equal(m?.updatedAt, at(3));
      // Even if a job id is passed, a stable state holds no job.
      assert.equal(
        await store.machines.transition('vm-1', 'failed-over', 'committing', 'job-3', at(4)),
        true,
      );
      assert.equal(
        await store.machines.transition('vm-1', 'committing', 'failover-committed', 'job-3', at(5)),
        true,
      );
      assert.equal((await store.machines.get('vm-1'))?.currentJobId, null);
      assert.equal(
        await store.machines.transition('nope', 'protected', 'failing-over', 'job-1', at(4)),
        false,
      );
    }));

  it('machines: recordReplication writes only the snapshot and health', () =>
    withStore(async (store) => {
      await store.machines.create(machine());
      const snapshot = {
        state: 'streaming' as const,
        progress: 100,
        rpoSeconds: 0.5,
        pendingBytes: 4096,
        sentBytes: 1 << 30,
        throughputBytesPerSec: 1234,
        lastError: null,
        updatedAt: at(9),
      };
      await store.machines.recordReplication('vm-1', snapshot, 'healthy');
      const m = await store.machines.get('vm-1');
      assert.deepEqual(m?.replication, snapshot);
      assert.equal(m?.health, 'healthy');
      assert.equal(m?.updatedAt, machine().updatedAt, 'a monitor sample is not an edit');
      await store.machines.recordReplication('vm-1', null, 'unknown');
      assert.equal((await store.machines.get('vm-1'))?.replication, null);

      // A status asked for before the machine moved does not land after it.
      const seen = machine();
      assert.equal(await store.machines.recordReplication('vm-1', snapshot, 'healthy', seen), true);
      for (const moved of [
        { state: 'failed-over' as const },
        { activeHostId: 'host-2' },
        { recoveryHostId: null },
        { recoveryHostId: 'host-3' },
      ]) {
        const stale = { ...seen, ...moved };
        assert.equal(await store.machines.recordReplication('vm-1', null, 'critical', stale), false);
        assert.equal((await store.machines.get('vm-1'))?.health, 'healthy', JSON.stringify(moved));
      }
      await store.machines.update({ ...seen, recoveryHostId: null });
      const unprotected = { ...seen, recoveryHostId: null };
      assert.equal(await store.machines.recordReplication('vm-1', null, 'unknown', unprotected), true);
      assert.equal((await store.machines.get('vm-1'))?.health, 'unknown');
    }));

  it('replication history: every figure lands in each tier, aged buckets pruned, rows bounded (property)', () =>
    withStore(async (store) => {
      await store.machines.create(machine());
      const random = new SeededRandom(14);
      const figures: ReplicationFigure[] = [];
      let seconds = 0;
      for (let i = 0; i < 160; i++) {
        // Mostly monitor ticks, sometimes a gap of minutes, hours or days.
        seconds += random.pick([1, 3, 5, 7, 40, 700, 4000, 9 * 86_400]) + random.int(0, 3);
        const figure: ReplicationFigure = {
          at: at(seconds),
          throughputBytesPerSec: random.int(0, 1e9),
          pendingBytes: random.int(0, 2 ** 40),
          rpoSeconds: random.int(0, 4) === 0 ? null : random.int(0, 5000) / 4,
        };
        figures.push(figure);
        await store.replicationHistory.record('vm-1', figure);
      }
      const now = figures.at(-1)!.at;
      for (const tier of REPLICATION_TIERS) {
        // The reference: the figures each kept bucket holds, reduced directly.
        const ms = tier.resolutionSeconds * 1000;
        const buckets = Map.groupBy(figures, (f) => Math.floor(Date.parse(f.at) / ms) * ms);
        const expected = [...buckets]
          .filter(([start]) => start >= Date.parse(now) - tier.keepSeconds * 1000)
          .map(([start, fs]) => {
            const rpos = fs.map((f) => f.rpoSeconds).filter((r) => r !== null);
            return {
              at: new Date(start).toISOString(),
              resolutionSeconds: tier.resolutionSeconds,
              samples: fs.length,
              throughputBytesPerSec: fs.reduce((sum, f) => sum + f.throughputBytesPerSec, 0) / fs.length,
              pendingBytes: Math.max(...fs.map((f) => f.pendingBytes)),
              rpoSeconds: rpos.length > 0 ? Math.max(...rpos) : null,
            };
          });
        const stored = await store.replicationHistory.list('vm-1', tier.resolutionSeconds, at(0));
        assert.ok(expected.length > 1, `tier ${tier.resolutionSeconds} s has buckets to check`);
        assert.deepEqual(
          stored.map((b) => ({ ...b, throughputBytesPerSec: Math.round(b.throughputBytesPerSec) })),
          expected.map((b) => ({ ...b, throughputBytesPerSec: Math.round(b.throughputBytesPerSec) })),
          `tier ${tier.resolutionSeconds} s`,
        );
        assert.ok(stored.length <= tier.keepSeconds / tier.resolutionSeconds + 1);
        const recent = await store.replicationHistory.list(
          'vm-1',
          tier.resolutionSeconds,
          figures.at(-3)!.at,
        );
        assert.deepEqual(
          recent,
          stored.filter((b) => b.at >= bucketStart(figures.at(-3)!.at, tier.resolutionSeconds)),
        );
      }
      await store.machines.delete('vm-1');
      assert.deepEqual(await store.replicationHistory.list('vm-1', 600, at(0)), [], 'gone with its machine');
    }));

  it('machines: two racing transitions, exactly one wins (two stores)', async () => {
    const location = await freshLocation();
    const a = await openStore(location);
    const b = await openStore(location);
    try {
      for (let i = 0; i < 5; i++) {
        const id = `vm-race-${i}`;
        await a.machines.create(machine({ id, name: id }));
        const results = await Promise.all([
          a.machines.transition(id, 'protected', 'failing-over', `job-a-${i}`, at(1)),
          b.machines.transition(id, 'protected', 'starting-test-failover', `job-b-${i}`, at(1)),
          a.machines.transition(id, 'protected', 'disabling-replication', `job-c-${i}`, at(1)),
        ]);
        assert.equal(results.filter(Boolean).length, 1, `one winner in round ${i}`);
        const winner = ['failing-over', 'starting-test-failover', 'disabling-replication'][
          results.indexOf(true)
        ];
        assert.equal((await b.machines.get(id))?.state, winner);
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('recovery points: list order, booleans, big sizes, delete all but one, cascade', () =>
    withStore(async (store) => {
      await store.machines.create(machine());
      await store.machines.create(machine({ id: 'vm-2', name: 'other' }));
      const point = (id: string, seconds: number, extra: Partial<RecoveryPoint> = {}): RecoveryPoint => ({
        id,
        machineId: 'vm-1',
        time: at(seconds),
        sequence: seconds,
        type: 'crash-consistent',
        groupPointId: null,
        processed: true,
        sizeBytes: 3 * 2 ** 40 + 7,
        ...extra,
      });
      await store.recoveryPoints.add(point('rp-3', 30, { processed: false, type: 'app-consistent' }));
      await store.recoveryPoints.add(point('rp-1', 10, { groupPointId: 'gp-1' }));
      await store.recoveryPoints.add(point('rp-2', 20, { sizeBytes: 0 }));
      await store.recoveryPoints.add(point('rp-x', 5, { machineId: 'vm-2' }));
      assert.deepEqual(
        await store.recoveryPoints.get('rp-3'),
        point('rp-3', 30, { processed: false, type: 'app-consistent' }),
      );
      assert.deepEqual(await store.recoveryPoints.list('vm-1'), [
        point('rp-1', 10, { groupPointId: 'gp-1' }),
        point('rp-2', 20, { sizeBytes: 0 }),
        point('rp-3', 30, { processed: false, type: 'app-consistent' }),
      ]);
      // Equal times: the sequence orders them, not the id as text ('vm-1/d@1000' < 'vm-1/d@999').
      await store.recoveryPoints.add(point('vm-1/d@1000', 40, { sequence: 1000 }));
      await store.recoveryPoints.add(point('vm-1/d@999', 40, { sequence: 999 }));
      assert.deepEqual(
        (await store.recoveryPoints.list('vm-1')).slice(-2).map((p) => p.id),
        ['vm-1/d@999', 'vm-1/d@1000'],
      );
      assert.equal(await store.recoveryPoints.deleteAllExcept('vm-1', 'rp-3'), 4);
      await store.recoveryPoints.add(point('rp-1', 10, { groupPointId: 'gp-1' }));
      await store.recoveryPoints.add(point('rp-2', 20, { sizeBytes: 0 }));
      await rejectsWith(store.recoveryPoints.add(point('rp-9', 1, { machineId: 'nope' })), 'not_found');
      assert.equal(await store.recoveryPoints.deleteAllExcept('vm-1', 'rp-2'), 2);
      assert.deepEqual(
        (await store.recoveryPoints.list('vm-1')).map((p) => p.id),
        ['rp-2'],
      );
      assert.equal(await store.recoveryPoints.deleteAllExcept('vm-1', null), 1);
      assert.deepEqual(await store.recoveryPoints.list('vm-1'), []);
      await store.machines.delete('vm-2');
      assert.equal(await store.recoveryPoints.get('rp-x'), undefined, 'points go with their machine');
    }));

  it('recovery plans: CRUD with nested JSON', () =>
    withStore(async (store) => {
      const plan: RecoveryPlan = {
        id: 'plan-1',
        name: 'web tier',
        description: 'Databases first, then the web servers',
        groups: [
          {
            name: 'db',
            machineIds: ['vm-2'],
            before: [],
            after: [{ kind: 'script', name: 'check', script: 'check-db', timeoutSeconds: 60 }],
          },
          {
            name: 'web',
            machineIds: ['vm-1', 'vm-3'],
            before: [{ kind: 'manual', name: 'dns', text: 'Switch DNS ✓', timeoutSeconds: null }],
            after: [],
          },
        ],
        createdAt: t0,
        updatedAt: t0,
      };
      await store.plans.create(plan);
      await store.plans.create({ ...plan, id: 'plan-0', name: 'all', groups: [] });
      assert.deepEqual(await store.plans.get('plan-1'), plan);
      assert.deepEqual(await store.plans.getByName('web tier'), plan);
      assert.deepEqual(
        (await store.plans.list()).map((p) => p.id),
        ['plan-0', 'plan-1'],
      );
      const changed = { ...plan, description: '', groups: plan.groups.slice(1), updatedAt: at(5) };
      await store.plans.update(changed);
      assert.deepEqual(await store.plans.get('plan-1'), changed);
      await rejectsWith(store.plans.create({ ...plan, id: 'plan-2' }), 'conflict');
      await rejectsWith(store.plans.update({ ...plan, id: 'nope', name: 'nope' }), 'not_found');
      await store.plans.delete('plan-1');
      assert.equal(await store.plans.get('plan-1'), undefined);
    }));

  it('script runs: create, finish, list by job; a run whose job ended unfinished reads as interrupted', () =>
    withStore(async (store) => {
      await store.jobs.create(job({ id: 'job-1', state: 'running' }));
      await store.jobs.create(job({ id: 'job-2', state: 'failed' }));
      const run: ScriptRunRecord = startedScriptRun({
        id: 'run-1',
        jobId: 'job-1',
        stepName: 'g1.before.1',
        planId: 'plan-1',
        planName: 'app',
        action: 'dns',
        script: 'switch-dns',
        sha256: 'ab'.repeat(32),
        startedBy: 'alice',
        runAs: 'haven-script',
        runAsNote: 'dedicated script user',
        startedAt: t0,
      });
      await store.scriptRuns.create(run);
      await store.scriptRuns.create({ ...run, id: 'run-2', jobId: 'job-2', startedAt: at(1) });
      assert.deepEqual(await store.scriptRuns.get('run-1'), run);
      assert.equal((await store.scriptRuns.get('run-2'))!.state, 'interrupted');
      const end = {
        finishedAt: at(2),
        state: 'timed-out' as const,
        exitCode: null,
        signal: 'SIGKILL',
        output: 'started ✓\n',
        outputBytes: 5_000_000_000,
        outputTruncated: true,
      };
      await store.scriptRuns.finish('run-1', end);
      assert.deepEqual(await store.scriptRuns.get('run-1'), { ...run, ...end });
      assert.deepEqual(
        (await store.scriptRuns.list()).map((r) => r.id),
        ['run-2', 'run-1'],
      );
      assert.deepEqual(
        (await store.scriptRuns.list({ jobId: 'job-2' })).map((r) => r.id),
        ['run-2'],
      );
      await rejectsWith(store.scriptRuns.finish('nope', end), 'not_found');
    }));

  it('drill schedules: CRUD, due in order, one claim of a due run wins', () =>
    withStore(async (store) => {
      const schedule: DrillSchedule = {
        id: 'ds-1',
        name: 'nightly web',
        target: { kind: 'machine', machineId: 'm-1' },
        cadence: { kind: 'daily', at: '02:00', timeZone: 'Europe/Amsterdam' },
        point: 'random-retained',
        testNetwork: null,
        maxConcurrentPerHost: 2,
        timeLimitSeconds: 900,
        checks: { filesystems: true, script: { name: 'check-records', timeoutSeconds: 60 } },
        onConflict: 'wait',
        enabled: true,
        nextRunAt: at(100),
        lastRunAt: null,
        createdBy: 'alice',
        createdAt: t0,
        updatedAt: t0,
      };
      await store.drillSchedules.create(schedule);
      await store.drillSchedules.create({
        ...schedule,
        id: 'ds-2',
        name: 'plan hourly',
        target: { kind: 'plan', planId: 'p-1' },
        cadence: { kind: 'every', hours: 1 },
        checks: { filesystems: false, script: null },
        nextRunAt: at(50),
      });
      await store.drillSchedules.create({
        ...schedule,
        id: 'ds-3',
        name: 'off',
        enabled: false,
        nextRunAt: at(1),
      });
      await rejectsWith(store.drillSchedules.create({ ...schedule, id: 'ds-4' }), 'conflict');
      assert.deepEqual(await store.drillSchedules.get('ds-1'), schedule);
      assert.deepEqual(await store.drillSchedules.getByName('nightly web'), schedule);
      assert.deepEqual(
        (await store.drillSchedules.list({ target: { kind: 'plan', planId: 'p-1' } })).map((d) => d.id),
        ['ds-2'],
      );
      assert.deepEqual(
        (await store.drillSchedules.due(at(100))).map((d) => d.id),
        ['ds-2', 'ds-1'],
      );
      assert.deepEqual(
        (await store.drillSchedules.due(at(99))).map((d) => d.id),
        ['ds-2'],
      );
      const claims = await Promise.all(
        [1, 2, 3].map(() =>
          store.drillSchedules.claimRun('ds-1', at(100), { nextRunAt: at(200), lastRunAt: at(100) }),
        ),
      );
      assert.deepEqual(claims.filter(Boolean).length, 1);
      assert.equal((await store.drillSchedules.get('ds-1'))!.nextRunAt, at(200));
      await store.drillSchedules.update({ ...schedule, enabled: false, nextRunAt: null, updatedAt: at(3) });
      assert.equal((await store.drillSchedules.get('ds-1'))!.enabled, false);
      await store.drillSchedules.delete('ds-1');
      assert.equal(await store.drillSchedules.get('ds-1'), undefined);
    }));

  it('drill runs: history newest first, filters, the last proven point per machine (also from a plan drill)', () =>
    withStore(async (store) => {
      const check = (result: DrillCheck['result']): DrillCheck => ({
        kind: 'boot',
        name: 'boot',
        result,
        summary: result,
        evidence: 'haven-guest booted',
        evidenceIsScriptOutput: false,
        startedAt: t0,
        durationMs: 1500,
      });
      const member = (machineId: string, result: DrillCheck['result']) => ({
        machineId,
        machineName: machineId,
        point: { id: `${machineId}@1`, time: t0, type: 'app-consistent' as const },
        copy: {
          hostId: 'h-2',
          viewId: `drill-${machineId}`,
          vmName: `${machineId}-drill`,
          network: 'haven-test',
        },
        rtoSeconds: 12.5,
        checks: [check(result)],
        cleanedUp: true,
      });
      const run: DrillRun = {
        id: 'dr-1',
        scheduleId: 'ds-1',
        target: { kind: 'machine', machineId: 'm-1' },
        targetName: 'web',
        jobId: 'job-1',
        state: 'passed',
        reason: null,
        machines: [member('m-1', 'passed')],
        rtoSeconds: 12.5,
        checks: [],
        createdBy: 'schedule nightly web',
        createdAt: at(1),
        startedAt: at(1),
        endedAt: at(2),
      };
      await store.drillRuns.create(run);
      assert.deepEqual(await store.drillRuns.get('dr-1'), run);
      assert.deepEqual(await store.drillRuns.getByJob('job-1'), run);
      // A plan drill that failed as a whole, in which m-1 passed and m-2 failed.
      const plan: DrillRun = {
        ...run,
        id: 'dr-2',
        target: { kind: 'plan', planId: 'p-1' },
        targetName: 'billing',
        jobId: 'job-2',
        state: 'running',
        machines: [member('m-1', 'passed'), member('m-2', 'failed')],
        createdAt: at(10),
        startedAt: at(10),
        endedAt: null,
      };
      await store.drillRuns.create(plan);
      // Still running: it proves nothing yet.
      assert.equal((await store.drillRuns.lastProven('m-1'))!.id, 'dr-1');
      await store.drillRuns.update({ ...plan, state: 'failed', reason: 'm-2 did not boot', endedAt: at(20) });
      assert.equal((await store.drillRuns.lastProven('m-1'))!.id, 'dr-2');
      assert.equal(await store.drillRuns.lastProven('m-2'), undefined);
      assert.equal(await store.drillRuns.lastPassed({ kind: 'plan', planId: 'p-1' }), undefined);
      assert.equal((await store.drillRuns.lastPassed({ kind: 'machine', machineId: 'm-1' }))!.id, 'dr-1');
      // An interrupted drill never proves a point, whatever its checks said before the vault stopped.
      await store.drillRuns.create({
        ...run,
        id: 'dr-3',
        jobId: 'job-3',
        state: 'interrupted',
        createdAt: at(30),
        endedAt: at(31),
      });
      assert.equal((await store.drillRuns.lastProven('m-1'))!.id, 'dr-2');
      // All machines at once: the same proving run, and the newest run whatever its outcome.
      assert.deepEqual(
        (await store.drillRuns.machineProofRuns())
          .map((p) => ({ machineId: p.machineId, proven: p.lastProven?.id, newest: p.newest.id }))
          .sort((a, b) => a.machineId.localeCompare(b.machineId)),
        [
          { machineId: 'm-1', proven: 'dr-2', newest: 'dr-3' },
          { machineId: 'm-2', proven: undefined, newest: 'dr-2' },
        ],
      );
      assert.deepEqual(
        (await store.drillRuns.list()).map((r) => r.id),
        ['dr-3', 'dr-2', 'dr-1'],
      );
      assert.deepEqual(
        (await store.drillRuns.list({ machineId: 'm-2' })).map((r) => r.id),
        ['dr-2'],
      );
      assert.deepEqual(
        (
          await store.drillRuns.list({ target: { kind: 'machine', machineId: 'm-1' }, states: ['passed'] })
        ).map((r) => r.id),
        ['dr-1'],
      );
      assert.deepEqual(
        (await store.drillRuns.list({ scheduleId: 'ds-1', limit: 1 })).map((r) => r.id),
        ['dr-3'],
      );
      await rejectsWith(store.drillRuns.update({ ...run, id: 'nope' }), 'not_found');
    }));

  it('jobs: create with ordered steps, list, update, updateStep', () =>
    withStore(async (store) => {
      const j1 = job({ steps: [step(2, 'c'), step(0, 'a'), step(1, 'b')] });
      await store.jobs.create(j1);
      await store.jobs.create(job({ id: 'job-2', targetId: 'vm-2', createdAt: at(1), steps: [] }));
      await store.jobs.create(job({ id: 'job-3', state: 'waiting', createdAt: at(2) }));
      const stored = await store.jobs.get('job-1');
      assert.deepEqual(stored, { ...j1, steps: [step(0, 'a'), step(1, 'b'), step(2, 'c')] });
      assert.equal(await store.jobs.get('nope'), undefined);
      await rejectsWith(store.jobs.create(job()), 'conflict');
      assert.deepEqual(await store.jobs.get('job-1'), stored, 'a failed create leaves nothing behind');

      assert.deepEqual(
        (await store.jobs.list()).map((j) => j.id),
        ['job-3', 'job-2', 'job-1'],
      );
      assert.deepEqual(
        (await store.jobs.list({ targetId: 'vm-1' })).map((j) => [j.id, j.steps.length]),
        [
          ['job-3', 3],
          ['job-1', 3],
        ],
      );
      assert.deepEqual(
        (await store.jobs.list({ state: 'waiting' })).map((j) => j.id),
        ['job-3'],
      );
      assert.deepEqual(
        (await store.jobs.list({ limit: 1 })).map((j) => j.id),
        ['job-3'],
      );

      await store.jobs.update('job-1', {
        state: 'failed',
        progress: 40,
        output: { notes: 'drill ok', count: 3 },
        startedAt: at(1),
        finishedAt: at(9),
        error: { code: 'unreachable', message: 'host kvm-2 is unreachable' },
        cancelRequested: true,
      });
      const stepPatch = {
        state: 'failed',
        progress: 50,
        message: 'copying',
        startedAt: at(2),
        finishedAt: at(8),
        error: { code: 'internal', message: 'boom' },
      } as const;
      await store.jobs.updateStep('job-1', 1, stepPatch);
      let updated = await store.jobs.get('job-1');
      assert.equal(updated?.state, 'failed');
      assert.equal(updated?.progress, 40);
      assert.deepEqual(updated?.output, { notes: 'drill ok', count: 3 });
      assert.equal(updated?.startedAt, at(1));
      assert.equal(updated?.finishedAt, at(9));
      assert.deepEqual(updated?.error, { code: 'unreachable', message: 'host kvm-2 is unreachable' });
      assert.equal(updated?.cancelRequested, true);
      assert.deepEqual(updated?.input, j1.input);
      assert.deepEqual(updated?.steps[1], { ...step(1, 'b'), ...stepPatch });
      assert.deepEqual(updated?.steps[0], step(0, 'a'), 'other steps untouched');

      await store.jobs.update('job-1', { error: null, cancelRequested: false });
      await store.jobs.updateStep('job-1', 1, { error: null, message: null });
      updated = await store.jobs.get('job-1');
      assert.equal(updated?.error, null);
      assert.equal(updated?.cancelRequested, false);
      assert.equal(updated?.steps[1]?.error, null);
      assert.equal(updated?.steps[1]?.message, null);

      await rejectsWith(store.jobs.update('nope', { progress: 1 }), 'not_found');
      await rejectsWith(store.jobs.updateStep('job-1', 7, { progress: 1 }), 'not_found');
    }));

  it('jobs: claim takes the oldest queued job, skips waiting, reclaims expired leases', () =>
    withStore(async (store) => {
      await store.jobs.create(job({ id: 'job-waiting', state: 'waiting', createdAt: at(0) }));
      await store.jobs.create(job({ id: 'job-done', state: 'succeeded', createdAt: at(0) }));
      await store.jobs.create(job({ id: 'job-b', createdAt: at(2) }));
      await store.jobs.create(job({ id: 'job-a', createdAt: at(1) }));

      const first = await store.jobs.claim('w1', at(10), at(40));
      assert.equal(first?.id, 'job-a');
      assert.equal(first?.state, 'running');
      assert.equal(first?.startedAt, at(10));
      assert.equal(first?.steps.length, 3);
      assert.equal((await store.jobs.claim('w2', at(11), at(41)))?.id, 'job-b');
      assert.equal(
        await store.jobs.claim('w3', at(12), at(42)),
        undefined,
        'leases still valid, waiting not runnable',
      );

      // w1 renews; w2 stops renewing and its lease runs out.
      assert.equal(await store.jobs.renewLease('job-a', 'w1', at(100)), true);
      assert.equal(await store.jobs.renewLease('job-a', 'w2', at(100)), false, 'not the holder');
      assert.equal(
        await store.jobs.claim('w3', at(40), at(70)),
        undefined,
        'a lease ending now is not expired',
      );
      const taken = await store.jobs.claim('w3', at(50), at(80));
      assert.equal(taken?.id, 'job-b');
      assert.equal(taken?.startedAt, at(11), 'takeover keeps the original start');
      assert.equal(await store.jobs.renewLease('job-b', 'w2', at(200)), false, 'the old holder lost it');

      // A released job is not runnable again until someone queues it.
      await store.jobs.update('job-a', { state: 'waiting' });
      await store.jobs.release('job-a', 'w1');
      assert.equal(await store.jobs.renewLease('job-a', 'w1', at(300)), false);
      assert.equal(
        await store.jobs.claim('w4', at(60), at(90)),
        undefined,
        'job-a waiting, job-b leased until 80',
      );
      assert.equal((await store.jobs.claim('w4', at(81), at(111)))?.id, 'job-b', 'w3 died too');
    }));

  it('jobs: concurrent workers in two stores never claim the same job', async () => {
    const location = await freshLocation();
    const a = await openStore(location);
    const b = await openStore(location);
    try {
      const count = 24;
      for (let i = 0; i < count; i++) {
        await a.jobs.create(job({ id: `job-${String(i).padStart(2, '0')}`, createdAt: at(i), steps: [] }));
      }
      const claimed: string[] = [];
      const worker = async (store: Store, name: string) => {
        for (;;) {
          const j = await store.jobs.claim(name, at(100), at(200));
          if (!j) return;
          claimed.push(j.id);
        }
      };
      await Promise.all([worker(a, 'a1'), worker(a, 'a2'), worker(b, 'b1'), worker(b, 'b2')]);
      assert.equal(new Set(claimed).size, claimed.length, 'no job claimed twice');
      assert.equal(claimed.length, count, 'every job claimed');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('alerts: raise is idempotent per open key, clear, list', () =>
    withStore(async (store) => {
      const raised = await store.alerts.raise(alert());
      assert.deepEqual(raised, alert());
      const again = await store.alerts.raise(
        alert({ id: 'alert-2', message: 'still unreachable', raisedAt: at(5) }),
      );
      assert.deepEqual(again, alert(), 'the open alert is returned, not a new one');
      const concurrent = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          store.alerts.raise(
            alert({ id: `alert-c${i}`, key: 'rpo:vm-1', subjectType: 'machine', raisedAt: at(6) }),
          ),
        ),
      );
      assert.equal(new Set(concurrent.map((x) => x.id)).size, 1, 'one open alert per key under races');

      assert.equal(await store.alerts.clear('host-unreachable:host-1', at(10)), true);
      assert.equal(await store.alerts.clear('host-unreachable:host-1', at(11)), false);
      assert.equal(await store.alerts.clear('never-raised', at(11)), false);
      const reraised = await store.alerts.raise(alert({ id: 'alert-3', raisedAt: at(20) }));
      assert.equal(reraised.id, 'alert-3', 'a cleared key can be raised again');

      assert.deepEqual(
        (await store.alerts.list()).map((x) => [x.id, x.clearedAt]),
        [
          ['alert-3', null],
          [concurrent[0]!.id, null],
          ['alert-1', at(10)],
        ],
      );
      assert.deepEqual(
        (await store.alerts.list({ open: true })).map((x) => x.id),
        ['alert-3', concurrent[0]!.id],
      );
      assert.deepEqual(
        (await store.alerts.list({ open: false })).map((x) => x.id),
        ['alert-1'],
      );
      assert.deepEqual(
        (await store.alerts.list({ limit: 1 })).map((x) => x.id),
        ['alert-3'],
      );
    }));

  it('alerts: the first acknowledgement stays, the alert stays open', () =>
    withStore(async (store) => {
      await store.alerts.raise(alert());
      const first = await store.alerts.acknowledge('alert-1', { by: 'ops', at: at(1) });
      assert.deepEqual(first, alert({ acknowledged: { by: 'ops', at: at(1) } }));
      const second = await store.alerts.acknowledge('alert-1', { by: 'late', at: at(2) });
      assert.deepEqual(second?.acknowledged, { by: 'ops', at: at(1) });
      assert.deepEqual(
        (await store.alerts.list({ open: true })).map((x) => x.id),
        ['alert-1'],
      );
      assert.equal(await store.alerts.acknowledge('nope', { by: 'ops', at: at(3) }), undefined);
    }));

  it('settings: get, set, overwrite', () =>
    withStore(async (store) => {
      assert.equal(await store.settings.get('tls.key'), undefined);
      await store.settings.set('tls.key', '-----BEGIN PRIVATE KEY-----\nabc\n');
      await store.settings.set('vault.id', 'v1');
      await store.settings.set('vault.id', 'v2');
      assert.equal(await store.settings.get('tls.key'), '-----BEGIN PRIVATE KEY-----\nabc\n');
      assert.equal(await store.settings.get('vault.id'), 'v2');
    }));

  it('reopening keeps the data and runs no migration twice', async () => {
    const location = await freshLocation();
    const first = await openStore(location);
    await first.sites.create(site());
    await first.close();
    const second = await openStore(location);
    try {
      assert.deepEqual(await second.sites.get('site-a'), site());
      const third = await openStore(location);
      await third.close();
    } finally {
      await second.close();
    }
    assert.deepEqual(await appliedMigrations(location), Object.keys(migrations));
  });

  it('backup and restore round trip', async () => {
    const location = await freshLocation();
    const dir = await mkdtemp(join(tmpdir(), 'haven-backup-'));
    const file = join(dir, 'vault.backup');
    try {
      const store = await openStore(location);
      await store.sites.create(site());
      await store.machines.create(machine());
      await store.jobs.create(job());
      await store.settings.set('vault.id', 'before');
      await store.backup(file);
      // Changes after the backup must be gone after the restore.
      await store.sites.create(site({ id: 'site-b', name: 'later' }));
      await store.machines.transition('vm-1', 'protected', 'failing-over', 'job-1', at(1));
      await store.settings.set('vault.id', 'after');
      await store.close();

      await restoreStore(file, location);
      const restored = await openStore(location);
      try {
        assert.deepEqual(
          (await restored.sites.list()).map((s) => s.id),
          ['site-a'],
        );
        assert.deepEqual(await restored.machines.get('vm-1'), machine());
        assert.deepEqual(await restored.jobs.get('job-1'), job());
        assert.equal(await restored.settings.get('vault.id'), 'before');
        await restored.sites.create(site({ id: 'site-c', name: 'after-restore' }));
      } finally {
        await restored.close();
      }
      await rejectsWith(
        restoreStore(join(dir, 'missing'), location),
        expectedDialect === 'sqlite' ? 'not_found' : 'internal',
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

/** Names in Kysely's migration table, read without the store's help. */
async function appliedMigrations(location: StoreLocation): Promise<string[]> {
  if (location.databaseUrl) {
    const client = new pg.Client({ connectionString: location.databaseUrl });
    await client.connect();
    try {
      const result = await client.query('select name from kysely_migration order by name');
      return result.rows.map((row) => row.name as string);
    } finally {
      await client.end();
    }
  }
  const { DatabaseSync } = await import('node:sqlite');
  const db = new DatabaseSync(join(location.dataDir, 'haven.db'));
  try {
    return db
      .prepare('select name from kysely_migration order by name')
      .all()
      .map((row) => row.name as string);
  } finally {
    db.close();
  }
}

const tempDirs: string[] = [];
async function tempDataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'haven-store-'));
  tempDirs.push(dir);
  return dir;
}
after(async () => {
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('SQLite store', () => {
  storeSuite('sqlite', async () => ({ dataDir: await tempDataDir() }));

  it('survives synchronous=FULL and WAL settings', async () => {
    const dataDir = await tempDataDir();
    const store = await openStore({ dataDir });
    await store.close();
    const { DatabaseSync } = await import('node:sqlite');
    const db = new DatabaseSync(join(dataDir, 'haven.db'));
    try {
      assert.equal(db.prepare('pragma journal_mode').get()?.journal_mode, 'wal');
    } finally {
      db.close();
    }
  });
});

describe('PostgreSQL store', () => {
  let cluster: PostgresCluster;
  before(async () => {
    cluster = await startPostgresCluster();
  });
  after(async () => {
    await cluster?.stop();
  });
  storeSuite('postgres', async () => ({
    dataDir: await tempDataDir(),
    databaseUrl: await cluster.createDatabase(),
  }));

  it('several vaults opening a new database at once migrate it once', async () => {
    const location = { dataDir: await tempDataDir(), databaseUrl: await cluster.createDatabase() };
    const stores = await Promise.all([1, 2, 3].map(() => openStore(location)));
    await Promise.all(stores.map((store) => store.close()));
    assert.deepEqual(await appliedMigrations(location), Object.keys(migrations));
  });
});

describe('openStore', () => {
  it('refuses database URLs it cannot use', async () => {
    await rejectsWith(
      openStore({ dataDir: await tempDataDir(), databaseUrl: 'mysql://x:secret@db/haven' }),
      'validation_failed',
    );
  });
});
