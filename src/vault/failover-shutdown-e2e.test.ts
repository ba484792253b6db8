import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createGuestMachine } from '../app/demo-machine.ts';
import { type Embedded, startEmbedded } from '../app/start-embedded.ts';
import { ApiClient } from '../client/api-client.ts';
import type { Job, Machine } from '../domain/model.ts';
import { embeddedApi, runOperation } from '../testing/embedded-api.ts';
import { consoleOf as guestConsole, records } from '../testing/guest-console.ts';
import { until as waitUntil } from '../testing/until.ts';
import { startMachine } from './machine-power.ts';

/**
 * Failovers that shut the source down first, with real test guests under
 * QEMU: the writes made during the shutdown reach the failed-over copy, and a
 * guest that ignores the ACPI power-down request is forced off when asked.
 */
let dir: string;
let up: Embedded;

const api = embeddedApi(() => up);
const until = <T>(what: string, probe: () => Promise<T | undefined | false>) =>
  waitUntil(what, probe, { timeoutMs: 240_000 });
const consoleOf = (hostId: string, vmName: string) => guestConsole(up.vault.context, hostId, vmName);

function operate(machine: Machine, operation: string, body: unknown): Promise<Job> {
  return runOperation(api, machine.id, operation, body, 240_000);
}

async function protect(machine: Machine): Promise<Machine> {
  await until(
    'the guest to write records',
    async () => records(await consoleOf(machine.activeHostId, machine.name)).durable >= 2,
  );
  await operate(machine, 'enable-replication', { recoveryHostId: 'recovery', policyId: 'default' });
  return (await api<Machine>('GET', `/machines/${machine.id}`)).body;
}

/** A test guest writing records on the primary host, its disk behind the disk service. */
async function guestMachine(
  name: string,
  options: { rate?: number; extraCmdline?: string },
): Promise<Machine> {
  const { hosts } = (await api<{ hosts: Array<{ id: string; name: string }> }>('GET', '/hosts')).body;
  const client = new ApiClient({ url: up.vault.url, token: up.adminToken });
  let machine = await createGuestMachine(client, {
    name,
    hostId: hosts.find((h) => h.name === 'primary')!.id,
    disk: join(dir, 'images', `${name}.img`),
    sizeBytes: 64 << 20,
    ...(options.rate ? { rate: options.rate } : {}),
  });
  if (options.extraCmdline) {
    const boot = machine.recoverySettings.boot!;
    const patched = await api<Machine>('PATCH', `/machines/${machine.id}/recovery-settings`, {
      ...machine.recoverySettings,
      boot: { ...boot, cmdline: `${boot.cmdline} ${options.extraCmdline}` },
    });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    machine = patched.body;
  }
  await startMachine(up.vault.context, machine);
  return machine;
}

/** Powers the failed-over copy off: the machine has shown what it recovered and the host has two cores. */
async function stopCopy(machine: Machine): Promise<void> {
  const copy = (await api<Machine>('GET', `/machines/${machine.id}`)).body.runtime.failover!;
  await up.vault.context.hosts.call(copy.hostId, 'hypervisor.fence', { name: copy.vmName });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-shutdown-'));
  up = await startEmbedded({ dataDir: dir, port: 0, senderPollMs: 25, monitorIntervalMs: 500, demo: false });
});

after(async () => {
  await up?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('failover that shuts the source down first (real guests)', () => {
  it('unplanned, --point latest: every record the guest made durable before powering off is in the copy', async () => {
    // Many records a second, so the guest makes some durable while it shuts down.
    let machine = await guestMachine('busy-01', { rate: 100 });
    machine = await protect(machine);
    const primary = machine.activeHostId;
    const job = await operate(machine, 'failover', {
      recoveryPoint: { option: 'latest' },
      shutdownSource: true,
    });
    assert.match(String(job.output.shutdown), /powered-down/);
    // Nothing is written after the guest powered itself off: its console's last durable record is final.
    const lastDurable = records(await consoleOf(primary, machine.name)).durable;
    const copy = (await api<Machine>('GET', `/machines/${machine.id}`)).body.runtime.failover!;
    const recovered = await until('the copy to recover its records', async () => {
      const r = records(await consoleOf(copy.hostId, copy.vmName)).recovered;
      return r === null ? undefined : r;
    });
    assert.equal(recovered, lastDurable, 'the copy holds every record made durable until the power-off');
    assert.match(String(job.output.fence), /^fenced \(verified/);
    await stopCopy(machine);
  });

  it('planned, with a guest that ignores ACPI power-down: forced off after --force-off-after, then failed over', async () => {
    // Without ACPI the kernel never sees the power button: the guest ignores the request.
    let machine = await guestMachine('deaf-01', { extraCmdline: 'acpi=off' });
    machine = await protect(machine);
    const t0 = Date.now();
    const job = await operate(machine, 'planned-failover', { forceOffAfterSeconds: 5 });
    assert.match(
      String(job.output.shutdown),
      /^forced off after \d+\.\d s: the guest did not power down within 5 s/,
    );
    assert.ok(Date.now() - t0 < 90_000, 'not the 90 s of a plain shutdown');
    assert.match(String(job.output.fence), /^fenced \(verified/);
    const after = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
    assert.equal(after.state, 'failed-over');
    await stopCopy(machine);
  });
});
