/**
 * RTO against disk size: the same tiny guest protected with a 1 GiB and a
 * 16 GiB sparse data disk, failed over at "latest processed"; measures the
 * time from the failover API call to the recovery machine's first console
 * line. Haven boots the recovery machine from a point-in-time view, so the
 * figure must not grow with the disk size. Also prints the time of the
 * equivalent full copy with `dd` for contrast (what a copy-before-boot
 * failover would pay first).
 *
 *   node_modules/.bin/node bench/rto/run.ts
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createGuestMachine } from '../../src/app/demo-machine.ts';
import { startEmbedded } from '../../src/app/start-embedded.ts';
import { ApiClient } from '../../src/client/api-client.ts';
import type { Job, Machine } from '../../src/domain/model.ts';
import type { ConsoleLog } from '../../src/host/host-services.ts';
import { startMachine } from '../../src/vault/machine-power.ts';

const run = promisify(execFile);
const sizes = [1, 16].map((g) => g * 2 ** 30);
const dir = await mkdtemp(join(tmpdir(), 'haven-bench-rto-'));
const up = await startEmbedded({ dataDir: dir, port: 0, senderPollMs: 25, demo: false });
const client = new ApiClient({ url: up.vault.url, token: up.adminToken });

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await up.vault.app.request(`/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${up.adminToken}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await response.json()) as T;
  if (!response.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json)}`);
  return json;
}

async function wait<T>(probe: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 6000; i++) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out: ${what}`);
}

async function job(id: string): Promise<Job> {
  return wait(async () => {
    const j = await api<Job>('GET', `/jobs/${id}`);
    if (j.state === 'failed') throw new Error(`job failed: ${JSON.stringify(j.error)}`);
    return j.state === 'succeeded' ? j : undefined;
  }, 'job');
}

const rows: { size: string; rtoSeconds: number; ddSeconds: number }[] = [];
try {
  const primary = (await api<{ hosts: { id: string; name: string }[] }>('GET', '/hosts')).hosts.find(
    (h) => h.name === 'primary',
  )!;
  for (const size of sizes) {
    const name = `rto-${size / 2 ** 30}g`;
    const disk = join(dir, `${name}.img`);
    // Run it on the primary through the disk service, as haven up does for its demo machine.
    const machine = await createGuestMachine(client, { name, hostId: primary.id, disk, sizeBytes: size });
    await startMachine(up.vault.context, machine);
    await job(
      (
        await api<Job>('POST', `/machines/${machine.id}/enable-replication`, {
          recoveryHostId: 'recovery',
          policyId: 'default',
        })
      ).id,
    );
    await new Promise((r) => setTimeout(r, 3000));

    const t0 = performance.now();
    const failover = await api<Job>('POST', `/machines/${machine.id}/failover`, {
      recoveryPoint: { option: 'latest-processed' },
      shutdownSource: false,
    });
    await job(failover.id);
    const after = await api<Machine>('GET', `/machines/${machine.id}`);
    const copy = after.runtime.failover!;
    await wait(async () => {
      const log = await up.vault.context.hosts.call<ConsoleLog>(copy.hostId, 'hypervisor.consoleLog', {
        name: copy.vmName,
      });
      return log.lines.some((l) => l.includes('haven-guest booted')) ? true : undefined;
    }, 'first console line');
    const rto = (performance.now() - t0) / 1000;

    const d0 = performance.now();
    await run('dd', [
      `if=${disk}`,
      `of=${join(dir, 'copy.img')}`,
      'bs=4M',
      'conv=sparse,fsync',
      'status=none',
    ]);
    const dd = (performance.now() - d0) / 1000;
    await rm(join(dir, 'copy.img'), { force: true });
    rows.push({ size: `${size / 2 ** 30} GiB`, rtoSeconds: rto, ddSeconds: dd });
  }
} finally {
  await up.stop();
  await rm(dir, { recursive: true, force: true });
}

console.log('disk      RTO (failover call → first console line)   dd full copy of the disk');
for (const r of rows)
  console.log(
    `${r.size.padEnd(9)} ${r.rtoSeconds.toFixed(1).padStart(6)} s ${''.padEnd(34)} ${r.ddSeconds.toFixed(1).padStart(6)} s`,
  );
console.log(`ratio RTO 16 GiB / 1 GiB: ${(rows[1]!.rtoSeconds / rows[0]!.rtoSeconds).toFixed(2)}`);
