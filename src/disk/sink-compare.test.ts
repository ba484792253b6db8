/**
 * A sink's compare mode against a model: a replica made by the sink's own
 * journal, then random writes, write-zeroes and trims (block-aligned and not,
 * many in flight at once, many of them rewriting exactly what the replica
 * holds) in a compare window. Replaying the journal onto the replica gives the
 * model disk at every burst boundary, and whole blocks the replica already
 * held were skipped.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readJournal, replay } from '../testing/disk-service.fixture.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import { type BlockHashes, blockCountOf, blockDigest } from './block-hashes.ts';
import { SinkBackend } from './sink-backend.ts';

const BLOCK = 4096;
/** Not a multiple of the block: the last block is shorter. */
const SIZE = 256 * BLOCK + 1536;

function hashesOf(disk: Buffer, blockBytes: number, throughSeq: number): BlockHashes {
  const blockCount = blockCountOf(disk.length, blockBytes);
  const digests = Buffer.alloc(blockCount * 32);
  for (let i = 0; i < blockCount; i++) {
    blockDigest(disk.subarray(i * blockBytes, Math.min((i + 1) * blockBytes, disk.length))).copy(
      digests,
      i * 32,
    );
  }
  return { blockBytes, sizeBytes: disk.length, blockCount, digests, throughSeq };
}

async function openSink(root: string, name: string): Promise<SinkBackend> {
  return SinkBackend.open({
    journalDir: join(root, name),
    sizeBytes: SIZE,
    journalCapacityBytes: 256 << 20,
    syncIntervalMs: 1000,
  });
}

for (const seed of [1, 2, 3, 4, 5, 6]) {
  test(`compare mode: the replica plus the journal is the disk, for every burst (seed ${seed})`, async () => {
    const root = await mkdtemp(join(tmpdir(), 'haven-sink-compare-'));
    const sink = await openSink(root, 'sink');
    const rnd = new SeededRandom(seed);
    try {
      // The replica: what the sink journaled before the mirror broke.
      const model = Buffer.alloc(SIZE);
      for (let i = 0; i < 120; i++) {
        const block = rnd.int(0, SIZE / BLOCK - 1);
        const length = rnd.int(1, 3) * BLOCK;
        const offset = block * BLOCK;
        if (offset + length > SIZE) continue;
        const data = rnd.int(0, 3) === 0 ? Buffer.alloc(length, rnd.int(1, 4)) : rnd.bytes(length);
        data.copy(model, offset);
        await sink.write(offset, data, { fua: false });
      }
      const replica = Buffer.from(model);
      const hashes = hashesOf(replica, BLOCK, sink.journal.status.nextSeq - 1);
      const firstCompared = sink.journal.status.nextSeq;
      sink.beginCompare(hashes);
      assert.throws(() => sink.beginCompare(hashes), /already comparing/);
      await assert.rejects(sink.markReady(), /still comparing/);

      const boundaries: Array<{ seq: number; disk: Buffer }> = [];
      for (let round = 0; round < 40; round++) {
        // A burst in flight at once: each call is ordered when it is made (as NBD requests are
        // when the server hands them over), so the model applies them in call order.
        const burst: Promise<void>[] = [];
        for (let i = 0; i < 12; i++) {
          const aligned = rnd.int(0, 2) !== 0;
          const blocks = blockCountOf(SIZE, BLOCK);
          let offset: number;
          let length: number;
          if (aligned) {
            const first = rnd.int(0, blocks - 1);
            offset = first * BLOCK;
            length = Math.min(rnd.int(1, 4) * BLOCK, SIZE - offset);
          } else {
            length = rnd.int(1, 24) * 512;
            offset = rnd.int(0, (SIZE - length) / 512) * 512;
          }
          const kind = rnd.pick(['same', 'same', 'same', 'write', 'write', 'zero', 'trim'] as const);
          if (kind === 'same' || kind === 'write') {
            // 'same' is what the mirror's full copy mostly sends: what the replica already holds.
            const data =
              kind === 'same' ? Buffer.from(replica.subarray(offset, offset + length)) : rnd.bytes(length);
            data.copy(model, offset);
            burst.push(sink.write(offset, data, { fua: rnd.int(0, 9) === 0 }));
          } else {
            model.fill(0, offset, offset + length);
            burst.push(
              kind === 'trim'
                ? sink.trim(offset, length, { fua: false })
                : sink.writeZeroes(offset, length, { fua: false, mayTrim: rnd.int(0, 1) === 0 }),
            );
          }
        }
        await Promise.all(burst);
        boundaries.push({ seq: sink.journal.status.nextSeq - 1, disk: Buffer.from(model) });
      }
      const stats = sink.endCompare();
      assert.throws(() => sink.endCompare(), /not comparing/);
      // After the window, everything is journaled again.
      const after = rnd.bytes(BLOCK);
      after.copy(model, 0);
      await sink.write(0, after, { fua: false });
      const tail = Buffer.from(replica.subarray(BLOCK, 2 * BLOCK));
      tail.copy(model, BLOCK);
      await sink.write(BLOCK, tail, { fua: false });
      await sink.flush();

      const records = await readJournal(join(root, 'sink'));
      const compared = records.filter((r) => r.seq >= firstCompared);
      for (const b of boundaries) {
        const prefix = compared.filter((r) => r.seq <= b.seq);
        assert.ok(
          replay(Buffer.from(replica), prefix).equals(b.disk),
          `the replica plus the journal through ${b.seq} is the disk at that moment`,
        );
      }
      assert.ok(replay(Buffer.alloc(SIZE), records).equals(model), 'the whole journal replays to the disk');
      assert.ok(stats.skippedBytes > 0, 'whole blocks the replica holds were skipped');
      assert.ok(stats.journaledBytes > 0);
      assert.equal(stats.comparedBytes, stats.skippedBytes + stats.journaledBytes);
      const journaled = compared.reduce((n, r) => n + (r.kind === 'flush' ? 0 : r.length), 0);
      assert.ok(
        journaled < stats.comparedBytes,
        `journaled ${journaled} of ${stats.comparedBytes} compared bytes`,
      );
    } finally {
      await sink.close();
      await rm(root, { recursive: true, force: true });
    }
  });
}

test('compare mode is refused on a ready sink, for hashes of another disk or of fewer records; a reopened sink is not ready', async () => {
  const root = await mkdtemp(join(tmpdir(), 'haven-sink-compare-'));
  let sink = await openSink(root, 'sink');
  try {
    await sink.write(0, Buffer.alloc(BLOCK, 7), { fua: false });
    const disk = Buffer.alloc(SIZE);
    disk.fill(7, 0, BLOCK);
    assert.throws(() => sink.beginCompare(hashesOf(disk, BLOCK, 0)), /through 0 but .* journaled through 1/);
    assert.throws(
      () => sink.beginCompare(hashesOf(Buffer.alloc(SIZE + 512), BLOCK, 1)),
      /-byte disk, not of this/,
    );
    assert.throws(() => sink.beginCompare({ ...hashesOf(disk, BLOCK, 1), blockCount: 3 }), /hold 3 blocks/);
    const ready = await sink.markReady();
    assert.equal(sink.readySeq, ready.seq);
    assert.throws(() => sink.beginCompare(hashesOf(disk, BLOCK, ready.seq)), /is ready/);
    await sink.close();
    sink = await openSink(root, 'sink');
    assert.equal(sink.readySeq, null, 'a reopened sink waits to be declared ready again');
    await assert.rejects(sink.cutPoint(), /not ready/);
    sink.beginCompare(hashesOf(disk, BLOCK, ready.seq));
    assert.deepEqual(sink.endCompare(), { comparedBytes: 0, skippedBytes: 0, journaledBytes: 0 });
  } finally {
    await sink.close();
    await rm(root, { recursive: true, force: true });
  }
});
