/**
 * App-consistent points of libvirt domains through the QEMU guest agent, on a
 * real libvirtd: the test guest runs a minimal agent on its
 * org.qemu.guest_agent.0 port that really freezes its data disk's file system
 * (fsfreeze). A protected domain gets an app-consistent point through the
 * agent; its writes pause while frozen and go on after; an agent that does
 * not answer is abandoned within the bound, the guest thawed and no point
 * claimed; a domain without an agent channel (and no hook) gets one alert.
 * Debian: libvirt-daemon-system, qemu-system-x86, qemu-utils.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type Embedded, startEmbedded } from '../app/start-embedded.ts';
import type { Alert, Host, Machine, RecoveryPoint } from '../domain/model.ts';
import { lookupShareGroup } from '../storage/share-group.ts';
import { embeddedApi, runOperation } from '../testing/embedded-api.ts';
import { records } from '../testing/guest-console.ts';
import { defineTestDomain, type LibvirtTestDomain } from '../testing/libvirt-domain.fixture.ts';
import { ensureLibvirtd, type Libvirtd, libvirtMissing } from '../testing/libvirtd.fixture.ts';
import { until as waitUntil } from '../testing/until.ts';
import { GroupScheduler } from './groups/index.ts';

const run = promisify(execFile);
const skip = await libvirtMissing();

describe('app-consistent points through the guest agent of a libvirt domain', { skip }, () => {
  let libvirtd: Libvirtd;
  let domain: LibvirtTestDomain;
  let plain: LibvirtTestDomain;
  let dir: string;
  let store: string;
  let up: Embedded;
  let machine: Machine;
  const api = embeddedApi(() => up);
  const suffix = randomBytes(3).toString('hex');
  const name = `haven-ga-${suffix}`;
  const until = <T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 120_000) =>
    waitUntil(what, probe, { timeoutMs, intervalMs: 200 });

  const consoleLines = async () => (await readFile(domain.consoleFile, 'utf8').catch(() => '')).split('\n');
  const agent = async (command: object) =>
    JSON.parse(
      (await run('virsh', ['-c', libvirtd.uri, 'qemu-agent-command', name, JSON.stringify(command)])).stdout,
    ) as { return: unknown };
  const appPoints = async (m: Machine) =>
    (
      await api<{ recoveryPoints: RecoveryPoint[] }>('GET', `/machines/${m.id}/recovery-points`)
    ).body.recoveryPoints.filter((p) => p.type === 'app-consistent');
  const openAlerts = async (key: string) =>
    (await api<{ alerts: Alert[] }>('GET', '/alerts?open=true')).body.alerts.filter((a) => a.key === key);

  before(async () => {
    libvirtd = await ensureLibvirtd();
    domain = await defineTestDomain(libvirtd.uri, name, { guestAgent: true });
    plain = await defineTestDomain(libvirtd.uri, `${name}-plain`);
    await run('virsh', ['-c', libvirtd.uri, 'start', name]);
    dir = await mkdtemp(join(tmpdir(), 'haven-ga-'));
    store = await mkdtemp('/tmp/haven-ga-store-');
    await chmod(store, 0o755);
    up = await startEmbedded({
      dataDir: dir,
      port: 0,
      demo: false,
      monitorIntervalMs: 500,
      libvirt: { uri: libvirtd.uri },
      shareGroup: await lookupShareGroup('libvirt-qemu'),
      storageFolders: [store, domain.dir, plain.dir],
    });
    await until('both hosts to connect', async () => {
      const { body } = await api<{ hosts: Host[] }>('GET', '/hosts');
      return body.hosts.length === 2 && body.hosts.every((h) => h.status === 'connected');
    });
  });

  after(async () => {
    await up?.stop();
    await domain?.remove();
    await plain?.remove();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (store) await rm(store, { recursive: true, force: true });
    await libvirtd?.stop();
  });

  it("reports the domain's guest agent channel in the host's inventory", async () => {
    const { body } = await api<{ domains: Array<{ name: string; guestAgent: boolean }> }>(
      'GET',
      '/hosts/primary/domains',
    );
    assert.equal(body.domains.find((d) => d.name === name)?.guestAgent, true);
    assert.equal(body.domains.find((d) => d.name === plain.name)?.guestAgent, false);
  });

  it('takes an app-consistent point of the protected domain through its guest agent', async () => {
    await until('the guest to write records', async () => records(await consoleLines()).durable >= 3);
    const imported = await api<Machine>('POST', '/machines/import', { hostId: 'primary', domain: name });
    assert.equal(imported.status, 201, JSON.stringify(imported.body));
    machine = imported.body;
    // The default policy asks for an app-consistent point every hour: the vault's scheduler takes the first now.
    await runOperation(
      api,
      machine.id,
      'enable-replication',
      { recoveryHostId: 'recovery', policyId: 'default' },
      120_000,
    );
    const [point] = await until('an app-consistent point at the recovery site', async () => {
      const points = await appPoints(machine);
      return points.length > 0 ? points : undefined;
    });
    assert.equal(point?.type, 'app-consistent');
    // The point can be listed before the guest's console shows the thaw (the thaw follows the marker).
    await until('the guest agent to have frozen /data, then thawed it', async () => {
      const lines = await consoleLines();
      const frozeAt = lines.findIndex((line) => line.includes('agent frozen /data'));
      const thawedAt = lines.findIndex((line, i) => i > frozeAt && line.includes('agent thawed /data'));
      return frozeAt >= 0 && thawedAt > frozeAt;
    });
    assert.deepEqual(await openAlerts(`app-consistent:${machine.id}`), []);
    assert.deepEqual(await openAlerts(`app-consistent-unavailable:${machine.id}`), []);
  });

  it("holds the guest's writes while frozen and lets them go when thawed", async () => {
    const hypervisor = up.hosts[0]!.agent.services.hypervisor;
    assert.deepEqual(await hypervisor.freezeFilesystems({ name }), { name, filesystems: 1 });
    try {
      assert.deepEqual(await agent({ execute: 'guest-fsfreeze-status' }), { return: 'frozen' });
      // A record already past its write may still announce itself; none after it.
      const frozen = records(await consoleLines()).durable;
      await new Promise((resolve) => setTimeout(resolve, 2000));
      assert.ok(records(await consoleLines()).durable <= frozen + 1, 'no record written while frozen');
    } finally {
      assert.deepEqual(await hypervisor.thawFilesystems({ name }), { name, filesystems: 1 });
    }
    const thawed = records(await consoleLines()).durable;
    await until('the guest to write again', async () => records(await consoleLines()).durable > thawed + 2);
  });

  it('abandons an agent that does not answer within the bound, thaws the guest and claims no point', async () => {
    const before = (await appPoints(machine)).length;
    // The guest's agent stops reading its port for 6 s; the bound is 1.5 s.
    await agent({ execute: 'haven-test-silence', arguments: { seconds: 6 } });
    const scheduler = new GroupScheduler(up.vault.context, { appConsistencyTimeoutMs: 1500 });
    const started = Date.now();
    await scheduler.runOnce();
    const tookMs = Date.now() - started;
    assert.ok(tookMs < 5000, `freeze and thaw abandoned within their bounds (took ${tookMs} ms)`);
    const [alert] = await openAlerts(`app-consistent:${machine.id}`);
    assert.match(alert?.message ?? '', /app-consistent point failed: .*did not finish in time/);
    // libvirt carries out the freeze once the agent listens again, and the thaw queued behind it.
    await until(
      'the guest agent to answer, thawed',
      async () => (await agent({ execute: 'guest-fsfreeze-status' })).return === 'thawed',
      30_000,
    );
    const thawed = records(await consoleLines()).durable;
    await until('the guest to write again', async () => records(await consoleLines()).durable > thawed + 2);
    assert.equal((await appPoints(machine)).length, before, 'no app-consistent point claimed');
    // Answering again, the next point clears the alert.
    await new GroupScheduler(up.vault.context, { appConsistencyTimeoutMs: 10_000 }).runOnce();
    assert.deepEqual(await openAlerts(`app-consistent:${machine.id}`), []);
    await until('the new app-consistent point', async () => (await appPoints(machine)).length > before);
  });

  it('a domain with no guest agent channel and no hook gets one alert saying why, not a failure each time', async () => {
    const imported = await api<Machine>('POST', '/machines/import', {
      hostId: 'primary',
      domain: plain.name,
    });
    assert.equal(imported.status, 201, JSON.stringify(imported.body));
    const { store: vaultStore } = up.vault.context;
    // Protection of a second domain is the other test's; the scheduler only needs it markable with a policy.
    const plainMachine = imported.body;
    const { policyId } = (await vaultStore.machines.get(machine.id))!;
    assert.ok(policyId);
    await vaultStore.machines.update({ ...plainMachine, policyId });
    assert.ok(
      await vaultStore.machines.transition(
        plainMachine.id,
        'unprotected',
        'protected',
        null,
        plainMachine.updatedAt,
      ),
    );
    try {
      for (let i = 0; i < 3; i++) await new GroupScheduler(up.vault.context).runOnce();
      const alerts = await openAlerts(`app-consistent-unavailable:${plainMachine.id}`);
      assert.equal(alerts.length, 1, JSON.stringify(alerts));
      assert.match(alerts[0]!.message, /no app-consistent points although its policy asks for them/);
      assert.match(alerts[0]!.message, new RegExp(`domain '${plain.name}' has no guest agent channel`));
      assert.match(alerts[0]!.message, /no app-consistency hook/);
      assert.deepEqual(await openAlerts(`app-consistent:${plainMachine.id}`), [], 'no failed attempt');
    } finally {
      await vaultStore.machines.transition(
        plainMachine.id,
        'protected',
        'unprotected',
        null,
        plainMachine.updatedAt,
      );
    }
  });
});
