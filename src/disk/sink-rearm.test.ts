/**
 * Re-arming QEMU's active mirror into a sink without recopying the disk: a
 * real QEMU (`-machine none`, writes through HMP `qemu-io`) mirrors into the
 * sink, replicated by the real sender and receiver into the replica store;
 * the job is cancelled, the VM disk written meanwhile, then the replica's
 * block hashes are fetched, the sink compares, and `blockdev-mirror sync:
 * full` runs again. The sink journals about the blocks written meanwhile, not
 * the disk, and the replica's next point equals the VM disk.
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
import { runOk } from '../testing/nbd-test-fixture.ts';
import { hostIdentities, waitFor } from '../testing/replication-test-fixture.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import { DiskService } from './disk-service.ts';

const MiB = 1 << 20;
const SIZE = 64 * MiB;
const BLOCK = 64 << 10;

test('a mirror re-armed with a full copy into a comparing sink journals the blocks written meanwhile, not the disk', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'haven-sink-rearm-'));
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
    await runOk('qemu-img', ['create', '-f', 'raw', image, String(SIZE)]);
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 24M', '-c', 'write -P 0x22 40M 8M', image]);
    const info = await service.attach('vm-1.disk-0', {
      sink: { sizeBytes: SIZE },
      journalDir: join(root, 'sink.journal'),
    });
    const { port } = await receiver.listen();
    sender.addDisk({
      diskKey,
      source: service.backend(info.name) as ReplicationSource,
      receiver: { host: '127.0.0.1', port, fingerprint: recovery.fingerprint },
      statePath: join(root, 'sender-state.json'),
    });
    vm = await startImageQemu(root, image);
    const q = vm.qmp;
    const rnd = new SeededRandom(21);
    /** Distinct blocks written since the mirror broke: what a re-arm has to carry. */
    const dirty = new Set<number>();
    let written = 0;
    const randomWrite = async (node: string, track: boolean) => {
      const length = rnd.int(1, 32) * 512;
      const offset = rnd.int(0, (SIZE - length) / 512) * 512;
      const command =
        rnd.int(0, 9) === 0
          ? `write -z ${offset} ${length}`
          : `write -P ${rnd.int(1, 255)} ${offset} ${length}`;
      await q.execute<string>('human-monitor-command', { 'command-line': `qemu-io ${node} "${command}"` });
      if (!track) return;
      written += length;
      for (let b = Math.floor(offset / BLOCK); b * BLOCK < offset + length; b++) dirty.add(b);
    };
    const arm = () =>
      startActiveMirror(q, {
        device: 'vm-disk',
        socket,
        exportName: info.name,
        reconnectDelay: 5,
        readyTimeoutMs: 120_000,
        filterNodeName: 'haven-mirror-top',
        granularity: BLOCK,
      });
    const disarm = async () => {
      const cancelled = q.waitForEvent('BLOCK_JOB_COMPLETED', { timeoutMs: 30_000 });
      await q.execute('block-job-cancel', { device: 'haven-mirror' });
      await cancelled;
      await q.execute('blockdev-del', { 'node-name': 'haven-sink' });
    };

    // Protected: the first full copy, then live writes and points.
    const first = await arm();
    await first.ready;
    await service.markSinkReady(info.name);
    for (let i = 0; i < 50; i++) await randomWrite('haven-mirror-top', false);
    await service.cutPoint(info.name);

    // The mirror breaks (its job ends, as when QEMU's target failed for longer than the reconnect delay).
    await disarm();
    await waitFor('the sink to notice', () => service.info(info.name).sink?.readySeq === null, 5000);
    await assert.rejects(service.cutPoint(info.name), /not ready/);
    for (let i = 0; i < 80; i++) await randomWrite('vm-disk', true);

    // Re-arm: hashes of the replica (once it holds every record), compare, full copy again.
    const hashes = await sender.replicaHashes(diskKey, { blockBytes: BLOCK });
    const wireBefore = sender.status(diskKey).wireBytesSent;
    service.beginSinkCompare(info.name, hashes);
    const second = await arm();
    // Guest writes while the background copy runs (paused, so they land before it reaches them).
    await q.execute('job-pause', { id: 'haven-mirror' });
    for (let i = 0; i < 40; i++) await randomWrite('haven-mirror-top', true);
    await q.execute('job-resume', { id: 'haven-mirror' });
    await second.ready;
    t.diagnostic(`re-armed to READY in ${Date.now() - second.started} ms`);
    const stats = service.endSinkCompare(info.name);
    await service.markSinkReady(info.name);
    for (let i = 0; i < 20; i++) await randomWrite('haven-mirror-top', false);
    const last = await service.cutPoint(info.name);
    await waitFor(
      'the replica to hold the whole journal',
      () => sender.status(diskKey).lastAckedSeq >= last.seq,
      60_000,
      () => JSON.stringify(sender.status(diskKey)),
    );
    const resent = sender.status(diskKey).wireBytesSent - wireBefore;
    t.diagnostic(
      `written while disarmed or re-arming: ${written} bytes in ${dirty.size} blocks of ${BLOCK}; ` +
        `compare: ${JSON.stringify(stats)}; sent to the replica since (compressed): ${resent} bytes`,
    );
    assert.ok(stats.comparedBytes >= SIZE, 'the full copy went through the compare');
    const bound = 2 * dirty.size * BLOCK + 4 * BLOCK;
    assert.ok(stats.journaledBytes <= bound, `journaled ${stats.journaledBytes} bytes, bound ${bound}`);
    assert.ok(stats.journaledBytes < SIZE / 4, 'far from the disk size');

    await disarm();
    await vm.quit();
    assert.equal(vm.stderr().trim(), '', 'QEMU reported nothing on stderr');
    vm = null;
    const disk = await readFile(image);
    const view = await store.openView(diskKey, last.seq);
    try {
      assert.ok((await view.read(0, SIZE)).equals(disk), "the replica's latest point equals the VM's disk");
    } finally {
      await view.close();
    }
  } finally {
    await vm?.kill();
    await sender.close();
    await receiver.close();
    await store.close();
    await service.close();
    await rm(root, { recursive: true, force: true });
  }
});
