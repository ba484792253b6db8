import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { DEMO_MACHINE } from '../app/demo-machine.ts';
import {
  type Embedded,
  type EmbeddedOptions,
  embeddedHostOptions,
  startEmbedded,
} from '../app/start-embedded.ts';
import type { Alert, Job, Machine, RecoveryPoint } from '../domain/model.ts';
import { checkDataDisk } from '../guest/index.ts';
import type { MachineStatus, PointView } from '../host/host-services.ts';
import { startHost } from '../host/index.ts';
import { findQemuProcesses, isAlive } from '../hypervisor/qemu-process.ts';
import { embeddedApi, runOperation } from '../testing/embedded-api.ts';
import { consoleOf as guestConsole, records } from '../testing/guest-console.ts';
import { until as waitUntil } from '../testing/until.ts';

/**
 * The demo machine of `haven up` (a real Linux guest under QEMU writing
 * numbered, checksummed, fsynced records to ext4) through protect → drill →
 * failover → change point → commit, checking the recovered file system and
 * the record numbers the workload resumes from.
 */
const run = promisify(execFile);
let dir: string;
let up: Embedded;
let options: EmbeddedOptions;
let machine: Machine;

const api = embeddedApi(() => up);
const until = <T>(what: string, probe: () => Promise<T | undefined | false>) =>
  waitUntil(what, probe, { timeoutMs: 180_000 });

async function operate(operation: string, body: unknown): Promise<Job> {
  const job = await runOperation(api, machine.id, operation, body, 180_000);
  machine = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
  return job;
}

const consoleOf = (hostId: string, vmName: string) => guestConsole(up.vault.context, hostId, vmName);

/** The count of records the machine on its primary host last reported recovering, once it has. */
async function recoveredOnPrimary(what: string): Promise<number> {
  const line = await until(what, async () =>
    [...(await consoleOf(machine.primaryHostId, DEMO_MACHINE))]
      .reverse()
      .find((x) => /recovered \d+ ok/.test(x)),
  );
  return Number(line.match(/recovered (\d+)/)![1]);
}

/** e2fsck -fn (after journal replay on a copy) of the replica at a point, read through a read-only view. */
async function fsckAt(pointId: string): Promise<void> {
  const hostId = machine.recoveryHostId!;
  const view = await up.vault.context.hosts.call<PointView>(hostId, 'replica.openView', {
    machineId: machine.id,
    pointId,
    writable: false,
  });
  const copy = join(dir, `fsck-${Date.now()}.img`);
  try {
    await run('nbdcopy', [view.disks[0]!.nbdUri, copy]);
    const check = await checkDataDisk(copy);
    assert.ok(check.clean, `e2fsck of the recovered file system:\n${check.output}`);
  } finally {
    await up.vault.context.hosts.call(hostId, 'replica.closeView', {
      viewId: view.viewId,
      discardWrites: true,
    });
    await rm(copy, { force: true });
  }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-failover-'));
  options = { dataDir: dir, port: 0, senderPollMs: 25, monitorIntervalMs: 500 };
  up = await startEmbedded(options);
  machine = (await api<{ machines: Machine[] }>('GET', '/machines')).body.machines.find(
    (m) => m.name === DEMO_MACHINE,
  )!;
  assert.ok(machine, 'haven up offers the demo machine');
});

after(async () => {
  await up?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('failover cycle of a real guest (haven up demo machine)', () => {
  it('protects the running demo machine', async () => {
    const primary = machine.activeHostId;
    await until(
      'the demo guest to write records',
      async () => records(await consoleOf(primary, DEMO_MACHINE)).durable >= 2,
    );
    await operate('enable-replication', { recoveryHostId: 'recovery', policyId: 'default' });
    assert.equal(machine.state, 'protected');
  });

  it('runs a drill on the test network while production keeps running and replicating', async () => {
    const before = (
      await api<{ recoveryPoints: RecoveryPoint[] }>('GET', `/machines/${machine.id}/recovery-points`)
    ).body.recoveryPoints.length;
    const job = await operate('test-failover', { recoveryPoint: { option: 'latest-processed' } });
    assert.equal(machine.state, 'test-failover-active');
    const drill = machine.runtime.test!;
    assert.equal(drill.vmName, `${DEMO_MACHINE}-test`);
    assert.equal((job.output.drill as { network: string }).network, 'recovery-test');
    const lines = await until('the drill copy to recover its records', async () => {
      const l = await consoleOf(drill.hostId, drill.vmName);
      return records(l).recovered !== null ? l : undefined;
    });
    assert.ok(lines.some((l) => l.includes('haven-guest booted')));
    // Production is untouched: still running at the primary, still sending new points.
    const status = await up.vault.context.hosts.call<MachineStatus>(
      machine.primaryHostId,
      'hypervisor.status',
      {
        name: DEMO_MACHINE,
      },
    );
    assert.equal(status.state, 'running');
    await until('new recovery points during the drill', async () => {
      const { body } = await api<{ recoveryPoints: RecoveryPoint[] }>(
        'GET',
        `/machines/${machine.id}/recovery-points`,
      );
      return body.recoveryPoints.length > before;
    });
    const cleaned = await operate('cleanup-test-failover', { notes: 'drill ok: records recovered' });
    assert.equal(machine.state, 'protected');
    assert.equal(cleaned.output.notes, 'drill ok: records recovered');
    assert.equal(machine.runtime.test, null);
  });

  it('fails over at "latest processed" without shutting the source down first, fencing it; RTO does not wait for a copy', async () => {
    const primary = machine.primaryHostId;
    const primaryDurable = records(await consoleOf(primary, DEMO_MACHINE)).durable;
    const t0 = Date.now();
    const job = await operate('failover', {
      recoveryPoint: { option: 'latest-processed' },
      shutdownSource: false,
    });
    assert.equal(machine.state, 'failed-over');
    assert.equal(machine.activeHostId, machine.recoveryHostId);
    assert.match(String(job.output.fence), /replication stopped/);
    const source = await up.vault.context.hosts.call<MachineStatus>(primary, 'hypervisor.status', {
      name: DEMO_MACHINE,
    });
    assert.notEqual(source.state, 'running', 'the source is fenced: never two live copies');
    const copy = machine.runtime.failover!;
    const lines = await until('the recovery machine to recover its records', async () => {
      const l = await consoleOf(copy.hostId, copy.vmName);
      return records(l).recovered !== null ? l : undefined;
    });
    const rto = (Date.now() - t0) / 1000;
    process.stdout.write(`# RTO (failover call → records recovered on the console): ${rto.toFixed(1)} s\n`);
    const { recovered } = records(lines);
    assert.ok(recovered !== null && recovered >= 1, 'the workload resumes from the recovered records');
    // The recovered point cannot hold records the source had not written yet.
    const sourceDurableAtFence = records(await consoleOf(primary, DEMO_MACHINE)).durable;
    assert.ok(recovered! <= sourceDurableAtFence, `recovered ${recovered} ≤ ${sourceDurableAtFence}`);
    assert.ok(sourceDurableAtFence >= primaryDurable);
    await fsckAt(copy.pointId);
  });

  it('changes the recovery point to an earlier one and restarts from it', async () => {
    const { body } = await api<{ recoveryPoints: RecoveryPoint[] }>(
      'GET',
      `/machines/${machine.id}/recovery-points`,
    );
    const current = machine.runtime.failover!;
    const earlier = body.recoveryPoints.filter((p) => p.time < current.pointTime);
    assert.ok(earlier.length > 0, 'there are earlier points to choose from');
    const target = earlier[Math.floor(earlier.length / 2)]!;
    await operate('change-recovery-point', { recoveryPoint: { option: 'custom', pointId: target.id } });
    assert.equal(machine.state, 'failed-over');
    assert.equal(machine.runtime.failover!.pointId, target.id);
    const copy = machine.runtime.failover!;
    const lines = await until('the machine to restart from the earlier point', async () => {
      const l = await consoleOf(copy.hostId, copy.vmName);
      return records(l).recovered !== null ? l : undefined;
    });
    assert.ok(records(lines).recovered! >= 0);
    await fsckAt(target.id);
  });

  it('commits, and refuses to commit twice with the state and what to do', async () => {
    await operate('commit', {});
    assert.equal(machine.state, 'failover-committed');
    const again = await api<{
      error: { code: string; message: string; details: { allowedOperations: string[] } };
    }>('POST', `/machines/${machine.id}/commit`, {});
    assert.equal(again.status, 409);
    assert.match(again.body.error.message, /is failover-committed: commit is not allowed there/);
    assert.ok(again.body.error.details.allowedOperations.includes('reprotect'));
  });

  it('refuses to reprotect while the primary machine runs, saying what to do', async () => {
    const primary = machine.primaryHostId;
    await up.vault.context.hosts.call(primary, 'hypervisor.start', { name: DEMO_MACHINE });
    const started = await api<Job>('POST', `/machines/${machine.id}/reprotect`, {});
    assert.equal(started.status, 202);
    const job = await until('the refused reprotect', async () => {
      const { body } = await api<Job>('GET', `/jobs/${started.body.id}`);
      return body.state === 'failed' ? body : undefined;
    });
    assert.equal(job.error?.code, 'operation_not_allowed');
    assert.match(
      job.error!.message,
      /primary machine 'demo-01' is running at the primary site; reprotect needs it off/,
    );
    machine = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
    assert.equal(machine.state, 'failover-committed', 'the machine is back where it was');
    await up.vault.context.hosts.call(primary, 'hypervisor.fence', { name: DEMO_MACHINE });
  });

  it('reprotects to the original machine, sending only the blocks that diverged', async () => {
    const job = await operate('reprotect', {});
    assert.equal(machine.state, 'reverse-protected');
    const sent = job.output.reprotectSent as { sentBytes: number; divergedBytes: number; diskBytes: number };
    process.stdout.write(
      `# reprotect sent ${sent.sentBytes} bytes; diverged ${sent.divergedBytes}; disk ${sent.diskBytes}\n`,
    );
    assert.ok(sent.sentBytes < sent.diskBytes / 8, `sent ${sent.sentBytes} of a ${sent.diskBytes}-byte disk`);
  });

  it('refuses failback when the original machine is gone and no alternate location is given', async () => {
    const { store } = up.vault.context;
    await store.machines.update({ ...(await store.machines.get(machine.id))!, originalExists: false });
    const refused = await api<{ error: { code: string; message: string } }>(
      'POST',
      `/machines/${machine.id}/failback`,
      {
        dataSync: 'before-failover',
      },
    );
    await store.machines.update({ ...(await store.machines.get(machine.id))!, originalExists: true });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error.code, 'validation_failed');
    assert.match(
      refused.body.error.message,
      /original machine .* is gone; failback needs an alternate location/,
    );
  });

  it('fails back with "synchronise before failover", then completes the failover: no durable record lost', async () => {
    await operate('failback', { dataSync: 'before-failover' });
    assert.equal(machine.state, 'failback-ready');
    const copy = machine.runtime.failover!;
    const job = await operate('complete-failover', {});
    assert.equal(machine.state, 'failed-back');
    assert.equal(machine.activeHostId, machine.primaryHostId);
    const lastAtRecovery = records(await consoleOf(copy.hostId, copy.vmName)).durable;
    assert.match(String(job.output.shutdown), /powered-down|powered-off|already-off/);
    const recovered = await recoveredOnPrimary('the primary machine to recover its records');
    assert.ok(recovered >= lastAtRecovery, `planned failback lost records: ${recovered} < ${lastAtRecovery}`);
  });

  it('commits the failback and reprotects forward, sending only what changed since', async () => {
    await operate('commit', {});
    assert.equal(machine.state, 'failback-committed');
    const job = await operate('reprotect', {});
    assert.equal(machine.state, 'protected');
    const sent = job.output.reprotectSent as { sentBytes: number; diskBytes: number };
    process.stdout.write(
      `# reprotect forward sent ${sent.sentBytes} bytes of a ${sent.diskBytes}-byte disk\n`,
    );
    assert.ok(sent.sentBytes < sent.diskBytes / 8);
  });

  it('second cycle: a planned failover loses no durable record', async () => {
    await until('new records since the reprotect', async () => {
      const { body } = await api<{ recoveryPoints: RecoveryPoint[] }>(
        'GET',
        `/machines/${machine.id}/recovery-points`,
      );
      return body.recoveryPoints.length >= 2;
    });
    const job = await operate('planned-failover', {});
    assert.equal(machine.state, 'failed-over');
    assert.match(String(job.output.shutdown), /powered-down/);
    // The source shut down cleanly: its last durable record is final.
    const lastAtPrimary = records(await consoleOf(machine.primaryHostId, DEMO_MACHINE)).durable;
    const copy = machine.runtime.failover!;
    const lines = await until('the recovery machine to recover its records', async () => {
      const l = await consoleOf(copy.hostId, copy.vmName);
      return records(l).recovered !== null ? l : undefined;
    });
    const { recovered } = records(lines);
    assert.ok(recovered! >= lastAtPrimary, `planned failover lost records: ${recovered} < ${lastAtPrimary}`);
    await fsckAt(copy.pointId);
    await operate('commit', {});
    const reprotect = await operate('reprotect', {});
    const sent = reprotect.output.reprotectSent as {
      sentBytes: number;
      divergedBytes: number;
      diskBytes: number;
    };
    assert.ok(sent.sentBytes < sent.diskBytes / 8, `sent ${sent.sentBytes}`);
  });

  it('fails back with "full download": whole disks compared, only differing blocks sent, then commit and reprotect', async () => {
    const copy = machine.runtime.failover!;
    const job = await operate('failback', { dataSync: 'full-download' });
    assert.equal(machine.state, 'failed-back');
    const lastAtRecovery = records(await consoleOf(copy.hostId, copy.vmName)).durable;
    const sent = job.output.failbackSent as { sentBytes: number };
    process.stdout.write(`# full-download failback sent ${sent.sentBytes} bytes\n`);
    assert.ok(
      sent.sentBytes < 268435456 / 4,
      'a full download compares blocks and sends only those that differ',
    );
    const recovered = await recoveredOnPrimary('the primary machine to recover its records');
    assert.ok(recovered >= lastAtRecovery, `failback lost records: ${recovered} < ${lastAtRecovery}`);
    await operate('commit', {});
    await operate('reprotect', {});
    assert.equal(machine.state, 'protected');

    // Finally the primary's own file system, after a clean shutdown, passes e2fsck.
    await up.vault.context.hosts.call(machine.primaryHostId, 'hypervisor.shutdown', {
      name: DEMO_MACHINE,
      timeoutSeconds: 60,
      onTimeout: 'power-off',
    });
    const check = await checkDataDisk(machine.disks[0]!.source);
    assert.ok(check.clean, check.output);
  });

  it('after the original machine is lost: reprotect to an alternate location makes a new machine with a full copy', async () => {
    await operate('failover', { recoveryPoint: { option: 'latest-processed' }, shutdownSource: false });
    await operate('commit', {});
    const { store } = up.vault.context;
    const originalDisk = machine.disks[0]!.source;
    await store.machines.update({ ...(await store.machines.get(machine.id))!, originalExists: false });
    const refused = await api<{ error: { code: string; message: string } }>(
      'POST',
      `/machines/${machine.id}/reprotect`,
      {},
    );
    assert.equal(refused.status, 400);
    assert.match(refused.body.error.message, /original machine .* is gone/);

    const job = await operate('reprotect', { alternateHostId: 'primary' });
    assert.equal(machine.state, 'reverse-protected');
    assert.notEqual(machine.disks[0]!.source, originalDisk, 'a new disk at the alternate location');
    assert.equal(machine.originalExists, true);
    const sent = job.output.reprotectSent as { sentBytes: number; diskBytes: number };
    process.stdout.write(
      `# reprotect to an alternate location sent ${sent.sentBytes} bytes (full copy of the used blocks, compressed)\n`,
    );
    // A new disk has nothing in common with the recovery copy: every used block is compared and sent
    // (zstd makes the used blocks of this small ext4 disk cheap on the wire).
    assert.equal((job.output.reprotect as { fullResync: boolean }).fullResync, true);
    assert.ok(sent.sentBytes > 0);

    const copy = machine.runtime.failover!;
    await operate('failback', { dataSync: 'before-failover' });
    await operate('complete-failover', {});
    assert.equal(machine.state, 'failed-back');
    const lastAtRecovery = records(await consoleOf(copy.hostId, copy.vmName)).durable;
    const recovered = await recoveredOnPrimary('the new machine to recover its records');
    assert.ok(recovered >= lastAtRecovery, `${recovered} < ${lastAtRecovery}`);
    await operate('commit', {});
    await operate('reprotect', {});
    assert.equal(machine.state, 'protected');
  });

  it('with the primary host cut off: fails over saying the source was not verified stopped, and stops it as soon as the host is back', async () => {
    const { context } = up.vault;
    const primaryId = machine.activeHostId;
    const primaryAt = up.hosts.findIndex((h) => h.agent.identity.hostId === primaryId);
    const recovery = up.hosts.find((h) => h.agent.identity.hostId === machine.recoveryHostId)!;
    const diskKey = `${machine.id}/${machine.disks[0]!.id}`;
    const alertKey = `fence-not-verified:${machine.id}`;
    const openAlert = async () =>
      (await api<{ alerts: Alert[] }>('GET', '/alerts?open=true')).body.alerts.find(
        (a) => a.key === alertKey,
      );
    const [sourcePid, ...others] = await findQemuProcesses(join(dir, 'hosts', 'primary', 'hypervisor'));
    assert.ok(sourcePid !== undefined && others.length === 0, 'one source QEMU runs on the primary host');

    // Cut the primary host off the vault: its agent stops; the source QEMU keeps running without it.
    await up.hosts[primaryAt]!.stop();
    await until('the vault to lose the primary host', async () => !context.hosts.isConnected(primaryId));
    assert.ok(await isAlive(sourcePid), 'the source QEMU outlives its host agent');

    const job = await operate('failover', { recoveryPoint: { option: 'latest-processed' } });
    assert.equal(machine.state, 'failed-over');
    assert.match(String(job.output.fence), /not verified: the source host is unreachable/);
    const fence = machine.sourceFence;
    assert.ok(
      fence && !fence.verified,
      `the machine says its source is not verified stopped: ${JSON.stringify(fence)}`,
    );
    assert.equal(fence.hostId, primaryId);
    assert.match(
      (await openAlert())?.message ?? '',
      /not verified fenced \(the source host is unreachable\)/,
    );
    assert.ok(await isAlive(sourcePid), 'the source still runs while its host is cut off');
    const atFailover = recovery.dataPath.replicaStore.diskStatus(diskKey);
    assert.equal(atFailover.sealed, true, 'the replica refuses the old primary from the failover on');

    // The host comes back on the same data directory: its sender resumes from its state file before the
    // vault speaks to it; the vault fences the source first, then stops that sender.
    const t0 = Date.now();
    up.hosts[primaryAt] = await startHost(embeddedHostOptions(options, 'primary'));
    await waitUntil('the source QEMU to be stopped', async () => !(await isAlive(sourcePid)), {
      timeoutMs: 30_000,
    });
    process.stdout.write(
      `# source fenced ${((Date.now() - t0) / 1000).toFixed(1)} s after its host restarted\n`,
    );
    machine = await waitUntil(
      'the machine to record its source verified stopped',
      async () => {
        const m = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
        return m.sourceFence?.verified ? m : undefined;
      },
      { timeoutMs: 10_000 },
    );
    assert.deepEqual(
      { ...machine.sourceFence, fencedAt: undefined },
      {
        verified: true,
        hostId: primaryId,
        vmName: DEMO_MACHINE,
        state: 'shut-off',
        jobId: job.id,
        by: 'host-returned',
        fencedAt: undefined,
      },
    );
    assert.equal(await openAlert(), undefined, 'the fence-not-verified alert is cleared');
    const status = await context.hosts.call<MachineStatus>(primaryId, 'hypervisor.status', {
      name: DEMO_MACHINE,
    });
    assert.equal(status.state, 'shut-off');
    const sender = up.hosts[primaryAt]!.dataPath.services.replication;
    await waitUntil(
      "the vault to stop the old primary's sender",
      async () => (await sender.status({ machineId: machine.id })).state === 'stopped',
      { timeoutMs: 10_000 },
    );
    const after = recovery.dataPath.replicaStore.diskStatus(diskKey);
    assert.equal(after.durableSeq, atFailover.durableSeq, 'nothing from the old primary reached the replica');
    assert.equal(after.sealed, true);
  });
});
