import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { QmpClient } from '../hypervisor/qmp-client.ts';
import { bootGuest } from './boot-guest.ts';
import { buildGuestImage, type GuestImage } from './build-guest-image.ts';
import { checkDataDisk, formatDataDisk } from './data-disk.ts';
import { runToolOrThrow } from './run-tool.ts';

// A calm machine boots the guest in about 4 s; a shared, loaded one (other
// suites running) has taken over 15 s, so waits are generous.
const WAIT_MS = 120_000;

/** Resolves like `promise`, or rejects after `ms`; the timer never outlives it (it would hold the test process open). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Numbers from every `durable <n>` console line, in order. */
function durableNumbers(lines: string[]): number[] {
  return lines.flatMap((line) => {
    const match = /^durable (\d+)$/.exec(line);
    return match ? [Number(match[1])] : [];
  });
}

/**
 * One guest disk through a life: power loss, recovery, clean powerdown, then
 * a corrupted record. The steps share the image, so they run in order.
 */
describe('test guest on a real QEMU', () => {
  let image: GuestImage;
  let dir: string;
  let disk: string;
  let lastDurableBeforeCrash = 0;

  before(async () => {
    image = await buildGuestImage();
    dir = await mkdtemp(join(tmpdir(), 'haven-guest-'));
    disk = join(dir, 'data.img');
    await formatDataDisk(disk, { sizeBytes: 64 * 1024 * 1024 });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('boots, writes durable records, and loses power with a consistent filesystem', async () => {
    const started = Date.now();
    const guest = bootGuest({ ...image, disk: { file: disk }, guest: { rate: 20, batch: 2 } });
    try {
      await guest.waitForLine(/haven-guest booted/, WAIT_MS);
      const bootMs = Date.now() - started;
      await guest.waitForLine(/^recovered 0 ok$/, WAIT_MS);
      await guest.waitForLine(/^durable (1[2-9]|[2-9]\d)$/, WAIT_MS);
      guest.kill('SIGKILL');
      await guest.exited;
      const durable = durableNumbers(guest.lines());
      // Batches of two, numbered from 1 without gaps.
      assert.deepEqual(
        durable,
        durable.map((_, i) => 2 * (i + 1)),
      );
      lastDurableBeforeCrash = durable.at(-1)!;
      console.log(
        `guest: first console line ${bootMs} ms after spawn; ${lastDurableBeforeCrash} records durable`,
      );
    } finally {
      guest.kill();
    }
    const check = await checkDataDisk(disk);
    assert.equal(check.journalReplayed, true, 'a power loss leaves the journal to replay');
    assert.equal(check.clean, true, check.output);
  });

  it('recovers every durable record after the power loss, continues numbering, and powers down on ACPI', async () => {
    const qmpSocket = join(dir, 'qmp.sock');
    const guest = bootGuest({ ...image, disk: { file: disk }, guest: { rate: 20, batch: 2 }, qmpSocket });
    try {
      const recovered = Number((await guest.waitForLine(/^recovered (\d+) ok$/, WAIT_MS))[1]);
      assert.ok(
        recovered >= lastDurableBeforeCrash,
        `recovered ${recovered} must include the last durable record ${lastDurableBeforeCrash}`,
      );
      const next = Number((await guest.waitForLine(/^durable (\d+)$/, WAIT_MS))[1]);
      assert.equal(next, recovered + 2);
      const qmp = await QmpClient.connect(qmpSocket);
      try {
        await qmp.execute('system_powerdown');
      } finally {
        await qmp.close();
      }
      const exit = await within(guest.exited, WAIT_MS, 'power off after system_powerdown');
      assert.deepEqual(exit, { code: 0, signal: null });
      const lines = guest.lines();
      assert.ok(lines.includes('powered off cleanly'), lines.join('\n'));
      const stoppedAt = Number(
        /^workload stopped at (\d+)$/.exec(lines.find((l) => l.startsWith('workload stopped')) ?? '')?.[1],
      );
      assert.equal(stoppedAt, durableNumbers(lines).at(-1));
    } finally {
      guest.kill();
    }
    const check = await checkDataDisk(disk);
    assert.equal(check.journalReplayed, false, 'a clean powerdown unmounts /data');
    assert.equal(check.clean, true, check.output);
  });

  it('reports the first corrupt record and writes nothing after it; boots over NBD with a static IP', async () => {
    // Flip one payload byte of record 5 through debugfs (the filesystem stays consistent).
    const log = join(dir, 'records.log');
    await runToolOrThrow('debugfs', ['-R', `dump /records.log ${log}`, disk]);
    const records = (await readFile(log, 'utf8')).split('\n');
    assert.match(records[4]!, /^n 5 sha [0-9a-f]{64} record-5-[0-9a-f]{8}-x+$/);
    records[4] = records[4]!.replace(/x$/, 'y');
    await writeFile(log, records.join('\n'));
    await runToolOrThrow('debugfs', ['-w', '-R', 'rm /records.log', disk]);
    await runToolOrThrow('debugfs', ['-w', '-R', `write ${log} records.log`, disk]);

    // This boot reaches its disk over NBD (nbdkit serving the image), the way
    // the disk service will attach it.
    const socket = join(dir, 'nbd.sock');
    const nbdkit = spawn('nbdkit', ['-f', '--exit-with-parent', '-U', socket, 'file', disk], {
      stdio: 'ignore',
    });
    for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 50));
    const guest = bootGuest({
      ...image,
      disk: { nbdUri: `nbd+unix:///?socket=${socket}` },
      guest: { rate: 20, ip: { address: '10.0.2.15/24', gateway: '10.0.2.2' } },
      qemuArgs: ['-netdev', 'user,id=n0', '-device', 'virtio-net-pci,netdev=n0'],
    });
    try {
      await guest.waitForLine(/^ip 10\.0\.2\.15\/24$/, WAIT_MS);
      await guest.waitForLine(/^corrupt at 5$/, WAIT_MS);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      assert.deepEqual(durableNumbers(guest.lines()), []);
      assert.ok(!guest.lines().some((l) => l.startsWith('recovered')));
    } finally {
      guest.kill();
      await guest.exited;
      nbdkit.kill('SIGKILL');
    }
  });
});
