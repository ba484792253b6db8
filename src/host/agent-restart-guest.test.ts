/**
 * A host agent killed with SIGKILL under a running guest: the guest's QEMU
 * (started by the agent's driver) keeps running, its NBD disk reconnects to
 * the agent started again on the same data directory, and the guest goes on
 * writing without an I/O error. Every write it made is in the journal, in order.
 * Debian: qemu-system-x86, e2fsprogs (and what src/guest needs).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { buildGuestImage, formatDataDisk, type GuestImage, guestCommandLine } from '../guest/index.ts';
import { QemuDriver } from '../hypervisor/qemu-driver.ts';
import { type Child, spawnTs } from '../testing/child-process.ts';
import { readJournal, replay } from '../testing/disk-service.fixture.ts';
import { records } from '../testing/guest-console.ts';
import { until } from '../testing/until.ts';
import type { DiskExport, MachineStatus } from './host-services.ts';

const FIXTURE = 'src/testing/host-data-path.fixture.ts';
// The guest boots in seconds on a calm machine, much slower on a loaded one.
const WAIT_MS = 180_000;
/** What the guest prints when its disk fails it (kernel, ext4, or its own workload). */
const DISK_FAILURE =
  /I\/O error|EXT4-fs (error|warning)|Aborting journal|write failed|fsync failed|Remounting/i;

interface Ready {
  servingMs: number;
  disks: DiskExport[];
  machines: MachineStatus[];
}

let root: string;
let image: GuestImage;
const children: Child[] = [];
let driver: QemuDriver | undefined;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'haven-agent-restart-'));
  image = await buildGuestImage();
});
after(async () => {
  await driver?.fence({ name: 'vm1' }).catch(() => {});
  for (const child of children) {
    if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
    await child.exited;
  }
  await rm(root, { recursive: true, force: true });
});

function startAgent(config: Record<string, unknown>): Child {
  const child = spawnTs(FIXTURE, [JSON.stringify(config)]);
  children.push(child);
  return child;
}

test('kill -9 of the host agent under a running guest: the guest goes on writing, without an I/O error', async () => {
  const dataDir = join(root, 'host');
  const source = join(dataDir, 'images', 'vm1-disk0.img');
  await mkdir(dirname(source), { recursive: true });
  const sizeBytes = 64 * 1024 * 1024;
  await formatDataDisk(source, { sizeBytes });
  const base = await readFile(source);
  const consoleLines = async (): Promise<string[]> => (await driver!.consoleLog({ name: 'vm1' })).lines;
  const failures = (lines: string[]) => lines.filter((line) => DISK_FAILURE.test(line));
  /** Waits for `durable` to pass `n`, failing at once when the guest reports a disk failure. */
  const durablePast = (n: number, what: string) =>
    until(
      what,
      async () => {
        const lines = await consoleLines();
        assert.deepEqual(failures(lines), [], `the guest saw its disk fail:\n${lines.slice(-15).join('\n')}`);
        const { durable } = records(lines);
        return durable > n ? durable : false;
      },
      { timeoutMs: WAIT_MS, intervalMs: 200 },
    );

  const first = startAgent({
    dataDir,
    attach: { machineId: 'vm1', diskId: 'disk0', source, sizeBytes },
    machine: {
      name: 'vm1',
      cpus: 1,
      memoryMiB: 128,
      nics: [],
      boot: { kernel: image.kernel, initrd: image.initramfs, cmdline: guestCommandLine({ rate: 10 }) },
    },
  });
  const ready = await first.firstJson<Ready>(WAIT_MS);
  assert.deepEqual(ready.machines, [{ name: 'vm1', state: 'running' }]);
  driver = new QemuDriver({ stateDir: join(dataDir, 'hypervisor') });
  await durablePast(5, 'the guest to write records');

  first.process.kill('SIGKILL');
  await first.exited;
  const killedAt = Date.now();
  const atKill = records(await consoleLines()).durable;
  // QEMU is the driver's daemon, not the agent's child: it survives the agent.
  assert.deepEqual(await driver.list(), [{ name: 'vm1', state: 'running' }]);
  await new Promise((resolve) => setTimeout(resolve, 1000));

  const second = startAgent({ dataDir });
  const back = await second.firstJson<Ready>(WAIT_MS);
  const restartedAt = Date.now();
  console.log(
    `agent back ${restartedAt - killedAt} ms after kill -9 (its data path up ${back.servingMs} ms after its start); guest durable ${atKill} at the kill`,
  );
  // The restarted agent finds the machine it started running, and serves its disk again.
  assert.deepEqual(back.machines, [{ name: 'vm1', state: 'running' }]);
  assert.deepEqual(
    back.disks.map((d) => [d.machineId, d.diskId, d.nbdUri]),
    ready.disks.map((d) => [d.machineId, d.diskId, d.nbdUri]),
  );
  const later = await durablePast(atKill + 20, 'the guest to write 20 more records after the restart');
  console.log(`guest durable ${later}, ${Date.now() - restartedAt} ms after the restart`);
  assert.deepEqual(failures(await consoleLines()), []);

  await driver.fence({ name: 'vm1' });
  second.process.kill('SIGTERM');
  assert.equal(await second.exited, 0, second.output());

  // Every write is in the journal, in order, and the writes after the restart landed there too.
  const journal = await readJournal(join(dataDir, 'journals', 'vm1', 'disk0'));
  journal.forEach((record, index) => {
    if (index > 0)
      assert.equal(record.seq, journal[index - 1]!.seq + 1, `sequence after ${journal[index - 1]!.seq}`);
  });
  const afterRestart = journal.filter((r) => r.kind === 'write' && r.timeMs > restartedAt);
  assert.ok(afterRestart.length > 0, 'writes after the restart are journaled');
  assert.ok(
    journal.some((r) => r.kind === 'flush' && r.timeMs > restartedAt),
    'flushes after the restart are journaled',
  );
  assert.ok(replay(base, journal).equals(await readFile(source)), 'the journal replays to the disk');
});
