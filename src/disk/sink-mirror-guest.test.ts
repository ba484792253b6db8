/**
 * A running QEMU guest (TCG, the test guest's record workload on ext4)
 * protected without restart: its own raw disk stays its disk, and QEMU's
 * active mirror (write-blocking) sends every write to `haven disk serve
 * --sink`. The service is killed with SIGKILL during the workload: every
 * record the guest reported durable before that is in the journal, QEMU
 * reconnects to the restarted service, and after the guest powers off the
 * journal replays onto an empty disk to exactly the guest's disk.
 * Debian: qemu-system-x86, e2fsprogs (and what src/guest needs).
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { bootGuest, buildGuestImage, formatDataDisk } from '../guest/index.ts';
import { runTool } from '../guest/run-tool.ts';
import { QmpClient } from '../hypervisor/qmp-client.ts';
import { startActiveMirror } from '../testing/active-mirror.ts';
import { type Child, spawnTs } from '../testing/child-process.ts';
import { readJournal, replay } from '../testing/disk-service.fixture.ts';
import { waitFor } from '../testing/replication-test-fixture.ts';

const MiB = 1 << 20;
const SIZE = 64 * MiB;
const WAIT_MS = 180_000;

const durableOf = (lines: string[]): number =>
  Math.max(
    0,
    ...lines
      .map((l) => /^durable (\d+)$/.exec(l)?.[1])
      .map(Number)
      .filter(Number.isFinite),
  );

/** The highest record of /records.log in an ext4 image, after replaying its journal on a copy. */
async function lastRecordIn(image: string, dir: string): Promise<number> {
  const copy = join(dir, 'check.img');
  await cp(image, copy);
  await runTool('e2fsck', ['-E', 'journal_only', '-y', copy]);
  const out = await runTool('debugfs', ['-R', 'cat /records.log', copy]);
  return Math.max(0, ...out.stdout.split('\n').map((l) => Number(/^n (\d+) /.exec(l)?.[1] ?? 0)));
}

test('a running guest mirrored into a sink: kill -9 of the service loses no durable record; the journal replays to its disk', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'haven-sink-guest-'));
  const image = await buildGuestImage();
  const disk = join(root, 'data.raw');
  const journal = join(root, 'sink.journal');
  const socket = join(root, 'nbd.sock');
  const qmpPath = join(root, 'qmp.sock');
  const serve = (): Child =>
    spawnTs('src/cli/main.ts', [
      'disk',
      'serve',
      '--sink',
      '--size',
      String(SIZE),
      '--journal',
      journal,
      '--socket',
      socket,
      '--export',
      'd0',
    ]);
  await formatDataDisk(disk, { sizeBytes: SIZE });
  let service = serve();
  const guest = bootGuest({
    ...image,
    disk: { file: disk },
    qmpSocket: qmpPath,
    guest: { rate: 20, batch: 2 },
  });
  let qmp: QmpClient | null = null;
  try {
    await service.firstJson();
    await guest.waitForLine(/^recovered 0 ok$/, WAIT_MS);
    await guest.waitForLine(/^durable \d+$/, WAIT_MS);
    qmp = await QmpClient.connect(qmpPath, { timeoutMs: 10_000 });
    const { ready, started } = await startActiveMirror(qmp, {
      device: 'virtio0',
      socket,
      exportName: 'd0',
      reconnectDelay: 30,
      readyTimeoutMs: WAIT_MS,
    });
    await ready;
    t.diagnostic(
      `time to BLOCK_JOB_READY for a ${SIZE / MiB} MiB ext4 disk under a running guest: ${Date.now() - started} ms`,
    );
    service.process.kill('SIGUSR1');
    await waitFor('the ready point', () => /"point":\d+/.test(service.output()), 10_000, service.output);

    const atReady = durableOf(guest.lines());
    await waitFor('records after READY', () => durableOf(guest.lines()) >= atReady + 20, WAIT_MS);
    const committed = durableOf(guest.lines());
    service.process.kill('SIGKILL');
    await service.exited;
    // What the killed service left behind, before anyone touches it again.
    const crashed = join(root, 'crashed.journal');
    await cp(journal, crashed, { recursive: true });
    const atCrash = join(root, 'at-crash.img');
    await writeFile(atCrash, replay(Buffer.alloc(SIZE), await readJournal(crashed)));
    const found = await lastRecordIn(atCrash, root);
    t.diagnostic(
      `guest reported records 1..${committed} durable before the kill; the journal holds 1..${found}`,
    );
    assert.ok(
      found >= committed,
      `record ${committed} was reported durable but the journal only holds ${found}`,
    );

    service = serve();
    await service.firstJson();
    await waitFor('records after the restart', () => durableOf(guest.lines()) >= committed + 20, WAIT_MS);
    const jobs = await qmp.execute<Array<{ device: string; ready: boolean }>>('query-block-jobs');
    assert.equal(jobs[0]?.ready, true, `the mirror survived the restart: ${JSON.stringify(jobs)}`);
    await qmp.execute('system_powerdown');
    await guest.waitForLine(/^powered off cleanly$/, WAIT_MS);
    await guest.exited;
    service.process.kill('SIGTERM');
    assert.equal(await service.exited, 0);
    const records = await readJournal(journal);
    assert.equal(records[0]?.seq, 1);
    assert.ok(
      replay(Buffer.alloc(SIZE), records).equals(await readFile(disk)),
      "the sink's journal replays onto an empty disk to the guest's own disk",
    );
  } finally {
    guest.kill();
    await guest.exited;
    await qmp?.close().catch(() => {});
    service.process.kill('SIGKILL');
    await service.exited;
    await rm(root, { recursive: true, force: true });
  }
});
