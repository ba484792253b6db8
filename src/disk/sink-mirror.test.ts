/**
 * A journal-only sink as the target of a real QEMU active mirror
 * (`blockdev-mirror`, `sync: full`, `copy-mode: write-blocking`) over NBD,
 * with writes during the background copy and after READY, replicated through
 * the real sender, receiver and replica store. QEMU runs without a guest
 * (`-machine none`); writes go through the mirror's filter node with HMP
 * `qemu-io`, which is where a guest's writes enter the block layer.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ReplicaStore } from '../replica/index.ts';
import { Receiver } from '../replication/receiver.ts';
import type { ReplicationSource } from '../replication/replicated-disk.ts';
import { Sender } from '../replication/sender.ts';
import { type ImageQemu, startActiveMirror, startImageQemu } from '../testing/active-mirror.ts';
import { readJournal, replay } from '../testing/disk-service.fixture.ts';
import { runOk } from '../testing/nbd-test-fixture.ts';
import { hostIdentities, waitFor } from '../testing/replication-test-fixture.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import { DiskService } from './disk-service.ts';

const MiB = 1 << 20;
const SIZE = 64 * MiB;

test('a sink behind QEMU active mirror journals exactly the disk, and the replica follows it', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'haven-sink-mirror-'));
  const image = join(root, 'vm.raw');
  const socket = join(root, 'nbd.sock');
  const service = await DiskService.start({ socket });
  const [primary, recovery] = await hostIdentities();
  const store = await ReplicaStore.open(join(root, 'store'));
  const receiver = new Receiver({
    identity: recovery,
    sink: store,
    allowedSenders: [primary.fingerprint],
    port: 0,
  });
  const sender = new Sender({ identity: primary, backoffMinMs: 20, backoffMaxMs: 200 });
  let vm: ImageQemu | null = null;
  const diskKey = 'vm-1/disk-0';
  try {
    // The VM's own disk, with data the background copy has to carry.
    await runOk('qemu-img', ['create', '-f', 'raw', image, String(SIZE)]);
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 24M', '-c', 'write -P 0x22 40M 8M', image]);
    const journalDir = join(root, 'sink.journal');
    const info = await service.attach('vm-1.disk-0', { sink: { sizeBytes: SIZE }, journalDir });
    vm = await startImageQemu(root, image);
    const q = vm.qmp;
    const rnd = new SeededRandom(7);
    const io = (command: string) =>
      q.execute<string>('human-monitor-command', { 'command-line': `qemu-io haven-mirror-top "${command}"` });
    const randomWrite = async () => {
      const length = rnd.int(1, 128) * 512;
      const offset = rnd.int(0, (SIZE - length) / 512) * 512;
      const kind = rnd.int(0, 9);
      if (kind === 0) await io(`write -z ${offset} ${length}`);
      else await io(`write -P ${rnd.int(1, 255)} ${offset} ${length}`);
    };

    const { ready, started } = await startActiveMirror(q, {
      device: 'vm-disk',
      socket,
      exportName: info.name,
      reconnectDelay: 5,
      readyTimeoutMs: 120_000,
      filterNodeName: 'haven-mirror-top',
    });
    // Writes before the background copy is done (paused here, as it would be on a busy or large
    // disk): they reach the sink out of order with the copy.
    await q.execute('job-pause', { id: 'haven-mirror' });
    const during = 300;
    for (let i = 0; i < during; i++) await randomWrite();
    await q.execute('job-resume', { id: 'haven-mirror' });
    await ready;
    const readyMs = Date.now() - started;
    t.diagnostic(
      `time to BLOCK_JOB_READY for a ${SIZE / MiB} MiB disk (32 MiB of data; the job paused for ${during} writes): ${readyMs} ms`,
    );
    t.diagnostic(`writes during the background copy: ${during}`);
    const readyPoint = await service.markSinkReady(info.name);
    for (let i = 0; i < 200; i++) {
      await randomWrite();
      if (i % 50 === 49) await service.cutPoint(info.name);
    }
    const last = await service.cutPoint(info.name);
    const cancelled = q.waitForEvent('BLOCK_JOB_COMPLETED', { timeoutMs: 30_000 });
    await q.execute('block-job-cancel', { device: 'haven-mirror' });
    await cancelled;
    await q.execute('blockdev-del', { 'node-name': 'haven-sink' });
    await vm.quit();
    assert.equal(vm.stderr().trim(), '', 'QEMU reported nothing on stderr');
    vm = null;

    const disk = await readFile(image);
    const records = await readJournal(journalDir);
    assert.equal(records[0]?.seq, 1);
    assert.ok(
      replay(Buffer.alloc(SIZE), records).equals(disk),
      "the sink's journal replays to the VM's disk",
    );
    assert.ok(
      records.every((r) => r.kind !== 'flush' || r.seq >= readyPoint.seq),
      'no flush record (point) before the one cut at READY',
    );

    // Replicated afterwards, so the journal above was whole when read (the sender trims what the replica stored).
    const { port } = await receiver.listen();
    sender.addDisk({
      diskKey,
      source: service.backend(info.name) as ReplicationSource,
      receiver: { host: '127.0.0.1', port, fingerprint: recovery.fingerprint },
      statePath: join(root, 'sender-state.json'),
    });

    await waitFor(
      'the replica to hold the whole journal',
      () => sender.status(diskKey).lastAckedSeq >= last.seq,
      60_000,
      () => JSON.stringify(sender.status(diskKey)),
    );
    const points = store.listPoints(diskKey);
    assert.ok(points.length >= 2, `points: ${points.map((p) => p.seq).join(',')}`);
    assert.ok(
      points.every((p) => p.seq >= readyPoint.seq),
      'the replica offers no point before the cut made at READY',
    );
    assert.equal(points.at(-1)?.seq, last.seq);
    const view = await store.openView(diskKey, last.seq);
    try {
      assert.ok((await view.read(0, SIZE)).equals(disk), "the replica's latest point equals the VM's disk");
    } finally {
      await view.close();
    }
    const sync = sender.status(diskKey).lastSync;
    assert.equal(sync?.kind, 'initial');
    assert.equal(sync?.dataBytes, 0, 'the initial sync copied no data: the journal carries the disk');
  } finally {
    await vm?.kill();
    await sender.close();
    await receiver.close();
    await store.close();
    await service.close();
    await rm(root, { recursive: true, force: true });
  }
});
