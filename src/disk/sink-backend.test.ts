/**
 * The journal-only sink against a model disk: random writes, trims and
 * write-zeroes over NBD (many in flight at once), and the journal replayed
 * onto an empty disk equals the model; reads are refused, points are cut only
 * once the mirror is declared ready.
 */
import assert from 'node:assert/strict';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { HavenError } from '../errors/index.ts';
import { hostDiskService } from '../host/host-disk-service.ts';
import { NbdClient } from '../nbd/index.ts';
import { readJournal, replay } from '../testing/disk-service.fixture.ts';
import { nbdUnixUri, runOk } from '../testing/nbd-test-fixture.ts';
import { waitFor } from '../testing/replication-test-fixture.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import { DiskService } from './disk-service.ts';

const SIZE = 4 << 20;

describe('journal-only sink', () => {
  let root: string;
  let service: DiskService;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'haven-sink-'));
    service = await DiskService.start({ socket: join(root, 'nbd.sock') });
  });
  after(async () => {
    await service.close();
    await rm(root, { recursive: true, force: true });
  });

  for (const seed of [1, 2, 3]) {
    test(`random writes, trims and zeroes replay onto an empty disk as the model (seed ${seed})`, async () => {
      const name = `sink-${seed}`;
      const journalDir = join(root, `${name}.journal`);
      await service.attach(name, { sink: { sizeBytes: SIZE }, journalDir });
      const client = await NbdClient.connect({ path: join(root, 'nbd.sock') }, { exportName: name });
      const rnd = new SeededRandom(seed);
      const model = Buffer.alloc(SIZE);
      try {
        for (let round = 0; round < 20; round++) {
          // A burst in flight at once: the model applies them in the order they were sent, so
          // no two of a burst overlap (their arrival order is not the send order).
          const taken: Array<[number, number]> = [];
          const burst: Promise<void>[] = [];
          for (let i = 0; i < 16; i++) {
            const length = rnd.int(1, 64) * 512;
            const offset = rnd.int(0, (SIZE - length) / 512) * 512;
            if (taken.some(([a, b]) => offset < b && a < offset + length)) continue;
            taken.push([offset, offset + length]);
            const kind = rnd.pick(['write', 'write', 'trim', 'zero'] as const);
            if (kind === 'write') {
              const data = rnd.bytes(length);
              data.copy(model, offset);
              burst.push(client.write(offset, data, { fua: rnd.int(0, 9) === 0 }));
            } else {
              model.fill(0, offset, offset + length);
              burst.push(kind === 'trim' ? client.trim(offset, length) : client.writeZeroes(offset, length));
            }
          }
          await Promise.all(burst);
          if (round % 5 === 4) await client.flush();
        }
        const readError = await client.read(0, 512).then(
          () => null,
          (e: HavenError) => e,
        );
        assert.match(String(readError?.message), /EIO/, 'a sink refuses reads');
        await assert.rejects(service.cutPoint(name), /mirror is not ready/);
        const ready = await service.markSinkReady(name);
        assert.equal(service.info(name).sink?.readySeq, ready.seq);
        const point = await service.cutPoint(name);
        assert.ok(point.seq > ready.seq);
        const records = await readJournal(journalDir);
        assert.deepEqual(
          records.filter((r) => r.kind === 'flush').map((r) => r.seq),
          [ready.seq, point.seq],
          'NBD flushes add no flush record; only the cuts do',
        );
        assert.ok(replay(Buffer.alloc(SIZE), records).equals(model), 'the journal replays to the model');
        assert.equal(service.journalStatus(name).durableSeq, point.seq);
      } finally {
        await client.disconnect();
        await service.detach(name);
      }
    });
  }

  test('acknowledged writes become durable within the sync interval without a flush', async () => {
    const name = 'sink-timer';
    await service.attach(name, {
      sink: { sizeBytes: SIZE, syncIntervalMs: 20 },
      journalDir: join(root, `${name}.journal`),
    });
    const client = await NbdClient.connect({ path: join(root, 'nbd.sock') }, { exportName: name });
    try {
      await client.write(0, Buffer.alloc(4096, 1));
      const written = service.journalStatus(name).writtenSeq;
      const deadline = Date.now() + 2000;
      while (service.journalStatus(name).durableSeq < written && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(service.journalStatus(name).durableSeq, written);
    } finally {
      await client.disconnect();
      await service.detach(name);
    }
  });

  test('a sink journal is refused for another size, and a sink needs a journal directory', async () => {
    const journalDir = join(root, 'sized.journal');
    await service.attach('sized', { sink: { sizeBytes: SIZE }, journalDir });
    await service.detach('sized');
    await assert.rejects(
      service.attach('sized', { sink: { sizeBytes: SIZE * 2 }, journalDir }),
      /was made for a 4194304-byte disk/,
    );
    await assert.rejects(service.attach('nodir', { sink: { sizeBytes: SIZE } }), /needs a journal directory/);
    await assert.rejects(
      service.insertMarker('nodir', { type: 'group', id: 'g' }),
      /not attached/,
      'nothing was attached',
    );
    await service.attach('sized', { sink: { sizeBytes: SIZE }, journalDir });
    await assert.rejects(service.insertMarker('sized', { type: 'group', id: 'g1' }), /mirrors are not ready/);
    await service.markSinkReady('sized');
    const marker = await service.insertMarker('sized', { type: 'group', id: 'g2' });
    const records = await readJournal(journalDir);
    assert.equal(records.at(-2)?.kind, 'flush', 'the marker follows a flush record');
    assert.equal(records.at(-1)?.seq, marker.seq);
    await service.detach('sized');
  });

  test('a sink whose NBD connection ends is not ready: no point is cut until it is declared ready again', async () => {
    const name = 'sink-conn';
    const socket = join(root, 'nbd.sock');
    await service.attach(name, { sink: { sizeBytes: SIZE }, journalDir: join(root, `${name}.journal`) });
    try {
      await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 64k', nbdUnixUri(socket, name)]);
      await waitFor('the first connection to end', () => service.stats().connections === 0, 5000);
      await service.markSinkReady(name);
      await service.cutPoint(name);
      // The mirror's connection goes (QEMU killed, its job cancelled, the link lost): writes may have been lost.
      await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5b 64k 64k', nbdUnixUri(socket, name)]);
      await waitFor('the sink to be not ready', () => service.info(name).sink?.readySeq === null, 5000);
      await assert.rejects(service.cutPoint(name), /mirror is not ready/);
      await service.markSinkReady(name);
      await service.cutPoint(name);
    } finally {
      await service.detach(name);
    }
  });

  test("the host's disk.attach exports a sink for a machine's own disk, without opening or creating it", async () => {
    const disk = hostDiskService(service, { dataDir: join(root, 'host-data') });
    const source = join(root, 'vm7-own-disk.qcow2');
    const ref = { machineId: 'vm7', diskId: 'root' };
    const exp = await disk.attach({ ...ref, source, sizeBytes: SIZE, sink: true });
    assert.equal(exp.source, source);
    assert.deepEqual(exp.sink, { ready: false });
    assert.equal(exp.sizeBytes, SIZE);
    await assert.rejects(access(source), 'the mirrored disk is not created');
    assert.deepEqual(
      await disk.attach({ ...ref, source, sizeBytes: SIZE, sink: true }),
      exp,
      'a retry finds it',
    );
    await assert.rejects(
      disk.attach({ ...ref, source, sizeBytes: SIZE }),
      (e: HavenError) => e.code === 'conflict' && /as a sink/.test(e.message),
    );
    await assert.rejects(
      disk.insertMarker({ machineIds: ['vm7'], type: 'crash-consistent', groupPointId: null }),
      /mirrors are not ready/,
    );
    await service.markSinkReady('vm7.root');
    assert.deepEqual((await disk.list({ machineId: 'vm7' }))[0]?.sink, { ready: true });
    await disk.insertMarker({ machineIds: ['vm7'], type: 'crash-consistent', groupPointId: null });
    await disk.detach(ref);
  });
});
