/**
 * `replicaHashes` over the real sender and receiver: it waits for every
 * journaled record to be acknowledged, then answers with the replica's block
 * hashes (equal to the source's); a receiver that cannot hash refuses with
 * not_available, and a lost receiver ends in unreachable after the bound.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { blockCountOf, blockDigest, DIGEST_BYTES } from '../disk/index.ts';
import type { HavenError } from '../errors/index.ts';
import { startRig } from '../testing/replication-test-fixture.ts';
import { SeededRandom } from '../testing/seeded-random.ts';

const MiB = 1 << 20;
const BLOCK = 16 << 10;

test('replicaHashes waits for every record, then answers with the replica hashes; refusals say why', async () => {
  const size = 8 * MiB + 4096;
  const rig = await startRig({ sizeBytes: size });
  try {
    await rig.caughtUp();
    const rnd = new SeededRandom(11);
    for (let i = 0; i < 200; i++) {
      const length = rnd.int(1, 64) * 512;
      const offset = rnd.int(0, (size - length) / 512) * 512;
      await rig.source.write(offset, rnd.bytes(length), { fua: false });
    }
    // Asked at once: the records above are not all at the replica yet.
    const lastSeq = rig.source.journal.status.nextSeq - 1;
    assert.ok(rig.sender.status(rig.diskKey).lastAckedSeq < lastSeq, 'asked before the replica caught up');
    const hashes = await rig.sender.replicaHashes(rig.diskKey, { blockBytes: BLOCK });
    assert.equal(hashes.throughSeq, lastSeq);
    assert.equal(hashes.blockCount, blockCountOf(size, BLOCK));
    assert.equal(hashes.digests.length, hashes.blockCount * DIGEST_BYTES);
    const disk = await rig.sourceBytes();
    for (let i = 0; i < hashes.blockCount; i++) {
      const expected = blockDigest(disk.subarray(i * BLOCK, Math.min((i + 1) * BLOCK, size)));
      assert.ok(hashes.digests.subarray(i * 32, i * 32 + 32).equals(expected), `block ${i}`);
    }
    assert.equal(rig.sender.status(rig.diskKey).replicaHashes, null, 'no fetch in progress any more');

    await assert.rejects(rig.sender.replicaHashes(rig.diskKey, { blockBytes: 1000 }), /multiple of 512/);

    // A replica store that cannot read its disks cannot hash them.
    const sink = rig.sink as unknown as { read: unknown };
    const read = sink.read;
    sink.read = undefined;
    await assert.rejects(
      rig.sender.replicaHashes(rig.diskKey, { blockBytes: BLOCK, timeoutMs: 10_000 }),
      (e: HavenError) => e.code === 'not_available' && /cannot be hashed/.test(e.message),
    );
    sink.read = read;

    await rig.receiver.close();
    const started = Date.now();
    await assert.rejects(
      rig.sender.replicaHashes(rig.diskKey, { blockBytes: BLOCK, timeoutMs: 500 }),
      (e: HavenError) => e.code === 'unreachable' && /within 500 ms/.test(e.message),
    );
    assert.ok(Date.now() - started < 5000);
  } finally {
    await rig.close();
  }
});
