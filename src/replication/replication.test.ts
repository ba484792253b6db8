import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import type { JournaledBackend } from '../disk/index.ts';
import { hostIdentities, startRig, waitFor } from '../testing/replication-test-fixture.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import { Receiver } from './receiver.ts';
import { Sender } from './sender.ts';

const KiB = 1024;
const MiB = 1024 * 1024;
const NO_FUA = { fua: false };

function digest(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Applies one random operation to the source and to the model. */
async function randomOp(
  rnd: SeededRandom,
  source: JournaledBackend,
  model: Buffer,
  compressible = true,
): Promise<void> {
  const size = model.length;
  const roll = rnd.next();
  const length = rnd.int(1, 32) * 4 * KiB;
  const offset = rnd.int(0, (size - length) / 4096) * 4096;
  if (roll < 0.75) {
    const data = compressible ? Buffer.alloc(length, rnd.int(0, 255)) : rnd.bytes(length);
    if (compressible) data.write(`seq ${rnd.int(0, 1e9)}`, rnd.int(0, length - 20));
    data.copy(model, offset);
    await source.write(offset, data, NO_FUA);
  } else if (roll < 0.85) {
    model.fill(0, offset, offset + length);
    await source.trim(offset, length, NO_FUA);
  } else {
    model.fill(0, offset, offset + length);
    await source.writeZeroes(offset, length, { fua: false, mayTrim: false });
  }
}

function assertAppliedOnce(ranges: [number, number][], durable: number): void {
  let expect: number | null = null;
  for (const [a, b] of ranges) {
    assert.ok(b >= a);
    if (expect !== null) assert.ok(a >= expect, `records ${a}..${expect - 1} were applied twice`);
    expect = b + 1;
  }
  if (ranges.length > 0) assert.equal((ranges.at(-1) as [number, number])[1], durable);
}

test('a random write history replicates over TLS: the replica equals the source at every flush point and at the end', async () => {
  const size = 8 * MiB;
  const rig = await startRig({ sizeBytes: size });
  try {
    const rnd = new SeededRandom(1);
    const model = Buffer.alloc(size);
    const expected = new Map<number, string>();
    const checked: number[] = [];
    rig.sink.onFlush = async (_key, seq, path) => {
      const want = expected.get(seq);
      if (want === undefined) return;
      assert.equal(digest(await readFile(path)), want, `replica differs from the source at flush ${seq}`);
      checked.push(seq);
    };
    await rig.caughtUp();
    for (let i = 0; i < 300; i++) {
      await randomOp(rnd, rig.source, model);
      if (i % 25 === 24) {
        await rig.source.flush();
        expected.set(rig.source.journal.status.nextSeq - 1, digest(model));
      }
    }
    await rig.caughtUp();
    assert.ok(checked.length >= 10, `only ${checked.length} flush points were checked`);
    assert.ok((await rig.sourceBytes()).equals(model), 'source image equals the model');
    assert.ok((await rig.replicaBytes()).equals(model), 'replica equals the model');
    const st = rig.sender.status(rig.diskKey);
    assert.ok(st.batchesCompressed > 0, 'compressible batches were compressed');
    assert.ok(
      st.wireBytesSent < 300 * 64 * KiB,
      `compressed stream (${st.wireBytesSent} bytes) is smaller than the writes`,
    );
    assert.equal(st.bytesPending, 0);
    // The journal is trimmed through what was acknowledged, no further.
    await waitFor('the journal trim', () => rig.source.journal.status.consumedSeq === st.lastAckedSeq);
    const sinkState = await rig.sink.state(rig.diskKey);
    assertAppliedOnce(sinkState.applied, st.lastAckedSeq);
  } finally {
    await rig.close();
  }
});

test('the sender streams as the journal grows, without waiting for a poll interval', async () => {
  // A poll interval longer than the test: only the journal's notifications wake the sender.
  const rig = await startRig({ sizeBytes: 4 * MiB, sender: { pollMs: 600_000 } });
  try {
    await rig.caughtUp();
    for (let round = 0; round < 5; round++) {
      await rig.source.write(round * 65536, Buffer.alloc(65536, round + 1), { fua: false });
      await rig.source.flush();
      await rig.caughtUp(5000);
    }
    assert.ok((await rig.replicaBytes()).equals(await rig.sourceBytes()), 'replica equals the source');
  } finally {
    await rig.close();
  }
});

test('incompressible batches are sent uncompressed', async () => {
  const size = 4 * MiB;
  const rig = await startRig({ sizeBytes: size });
  try {
    const rnd = new SeededRandom(2);
    const model = Buffer.alloc(size);
    await rig.caughtUp();
    for (let i = 0; i < 40; i++) {
      const data = rnd.bytes(64 * KiB);
      const offset = rnd.int(0, size / (64 * KiB) - 1) * 64 * KiB;
      data.copy(model, offset);
      await rig.source.write(offset, data, NO_FUA);
    }
    await rig.caughtUp();
    const st = rig.sender.status(rig.diskKey);
    assert.equal(st.batchesCompressed, 0);
    assert.ok(st.batchesUncompressed > 0);
    assert.ok((await rig.replicaBytes()).equals(model));
  } finally {
    await rig.close();
  }
});

test('initial replication of a running sparse disk skips holes and ends byte-identical', async () => {
  const size = 64 * MiB;
  const rnd = new SeededRandom(3);
  const model = Buffer.alloc(size);
  // 2 MiB of data in a 64 MiB disk before replication starts.
  const rig = await startRig({
    sizeBytes: size,
    sender: { syncChunkBytes: 256 * KiB },
    before: async (source) => {
      for (let i = 0; i < 32; i++) {
        const data = rnd.bytes(64 * KiB);
        const offset = rnd.int(0, size / (64 * KiB) - 1) * 64 * KiB;
        data.copy(model, offset);
        await source.write(offset, data, NO_FUA);
      }
      await source.flush();
    },
  });
  try {
    // Writes continue while the copy runs.
    let writes = 0;
    let sync = rig.sender.status(rig.diskKey).lastSync;
    while (sync?.completed !== true || writes < 50) {
      await randomOp(rnd, rig.source, model, false);
      await new Promise((r) => setTimeout(r, 2));
      writes++;
      sync = rig.sender.status(rig.diskKey).lastSync;
      assert.ok(writes < 3000, 'the initial sync did not complete');
    }
    const writesDuringCopy = writes;
    await rig.caughtUp();
    assert.ok((await rig.replicaBytes()).equals(model), 'replica equals the model');
    assert.ok(writesDuringCopy >= 50);
    assert.equal(sync?.kind, 'initial');
    // Only allocated data is read: never more than the source holds at the end.
    const allocated = (await rig.source.blockStatus(0, size))
      .filter((e) => e.flags === 0)
      .reduce((n, e) => n + e.length, 0);
    assert.ok(allocated < size / 4);
    assert.ok(
      (sync?.dataBytes ?? Infinity) <= allocated,
      `initial sync read ${sync?.dataBytes} of ${allocated} allocated bytes`,
    );
    assert.ok(
      (sync?.wireBytes ?? Infinity) < allocated + MiB,
      `initial sync sent ${sync?.wireBytes} of ${size} bytes`,
    );
  } finally {
    await rig.close();
  }
});

test('a journal overflow is resynced from the dirty bitmap: only the dirty regions are sent', async () => {
  const size = 16 * MiB;
  const rig = await startRig({ sizeBytes: size, capacityBytes: 512 * KiB });
  try {
    const rnd = new SeededRandom(4);
    const model = Buffer.alloc(size);
    await rig.caughtUp();
    rig.sender.pause(rig.diskKey);
    await waitFor('pause', () => rig.sender.status(rig.diskKey).state === 'paused');
    // 40 writes of 64 KiB into 1 MiB of the disk overflow the 512 KiB journal.
    for (let i = 0; i < 40; i++) {
      const data = rnd.bytes(64 * KiB);
      const offset = 4 * MiB + rnd.int(0, 15) * 64 * KiB;
      data.copy(model, offset);
      await rig.source.write(offset, data, NO_FUA);
    }
    assert.equal(rig.source.journal.mode, 'bitmap');
    const dirty = rig.source.journal.dirtyRegions().reduce((n, r) => n + r.length, 0);
    assert.ok(dirty > 0 && dirty <= MiB);
    rig.sender.resume(rig.diskKey);
    await rig.caughtUp();
    const sync = rig.sender.status(rig.diskKey).lastSync;
    assert.equal(sync?.kind, 'bitmap');
    assert.equal(sync?.regionBytes, dirty);
    assert.ok(
      (sync?.wireBytes ?? Infinity) <= dirty * 1.05 + 64 * KiB,
      `resync sent ${sync?.wireBytes} for ${dirty} dirty bytes`,
    );
    assert.equal(rig.source.journal.resyncRequired, false);
    assert.ok((await rig.replicaBytes()).equals(model));
  } finally {
    await rig.close();
  }
});

test('a hash-compare resync sends only the blocks that differ', async () => {
  const size = 16 * MiB;
  const rig = await startRig({ sizeBytes: size });
  try {
    const rnd = new SeededRandom(5);
    const model = Buffer.alloc(size);
    for (let i = 0; i < 60; i++) await randomOp(rnd, rig.source, model, false);
    await rig.caughtUp();
    // Damage 7 blocks of the replica behind the sender's back.
    const fh = await import('node:fs/promises').then((fs) => fs.open(rig.sink.imagePath(rig.diskKey), 'r+'));
    const damaged = new Set<number>();
    while (damaged.size < 7) damaged.add(rnd.int(0, size / (64 * KiB) - 1));
    for (const b of damaged) await fh.write(randomBytes(100), 0, 100, b * 64 * KiB + 1000);
    await fh.close();
    assert.ok(!(await rig.replicaBytes()).equals(model));
    const before = rig.sender.status(rig.diskKey).lastSync;
    rig.sender.requestResync(rig.diskKey, 'hash');
    await waitFor('the hash resync', () => {
      const s = rig.sender.status(rig.diskKey).lastSync;
      return s !== before && s?.kind === 'hash' && s.completed;
    });
    await rig.caughtUp();
    const sync = rig.sender.status(rig.diskKey).lastSync;
    assert.equal(sync?.blocksCompared, size / (64 * KiB));
    assert.equal(sync?.blocksDiffering, 7);
    assert.equal(sync?.regionBytes, 7 * 64 * KiB);
    // Differing blocks plus the hash requests; far below the disk size.
    assert.ok(
      (sync?.wireBytes ?? Infinity) < 8 * 64 * KiB + 16 * KiB,
      `hash resync sent ${sync?.wireBytes} bytes`,
    );
    assert.ok((await rig.replicaBytes()).equals(model));
  } finally {
    await rig.close();
  }
});

/** A TCP proxy that can cut every connection through it. */
async function startProxy(
  targetPort: number,
): Promise<{ port: number; cut: () => void; close: () => Promise<void> }> {
  const open = new Set<Socket>();
  const { connect } = await import('node:net');
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    open.add(client);
    open.add(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    cut: () => {
      for (const s of open) s.destroy();
    },
    close: () =>
      new Promise((r) => {
        for (const s of open) s.destroy();
        server.close(() => r());
      }),
  };
}

test('connections cut at random moments: replication resumes, nothing lost or applied twice, trims only what was acknowledged', async () => {
  const size = 8 * MiB;
  const [primary, recovery] = await hostIdentities();
  const rig = await startRig({ sizeBytes: size, sender: { batchBytes: 64 * KiB, windowBytes: 256 * KiB } });
  const proxy = await startProxy(rig.port);
  const sender = new Sender({
    identity: primary,
    backoffMinMs: 10,
    backoffMaxMs: 50,
    batchBytes: 64 * KiB,
    windowBytes: 256 * KiB,
  });
  try {
    // Route this test's disk through the proxy: replace the rig's direct sender.
    await rig.sender.removeDisk(rig.diskKey);
    sender.addDisk({
      diskKey: rig.diskKey,
      source: rig.source,
      receiver: { host: '127.0.0.1', port: proxy.port, fingerprint: recovery.fingerprint },
      statePath: join(rig.dir, 'sender-state.json'),
    });
    const rnd = new SeededRandom(6);
    const model = Buffer.alloc(size);
    const trims: number[] = [];
    const journal = rig.source.journal;
    const trimThrough = journal.trimThrough.bind(journal);
    journal.trimThrough = async (seq: number) => {
      const durable = await rig.sink.durableSequence(rig.diskKey);
      assert.ok(seq <= durable, `trimmed through ${seq} while the replica held only ${durable}`);
      trims.push(seq);
      return trimThrough(seq);
    };
    for (let i = 0; i < 400; i++) {
      await randomOp(rnd, rig.source, model);
      if (rnd.next() < 0.04) proxy.cut();
      if (rnd.next() < 0.02) sender.dropConnection(rig.diskKey);
      if (i % 50 === 49) await rig.source.flush();
    }
    await waitFor('catch-up through the proxy', () => {
      const st = sender.status(rig.diskKey);
      return st.state === 'streaming' && st.lastAckedSeq >= journal.status.writtenSeq;
    });
    const st = sender.status(rig.diskKey);
    assert.ok(st.connects >= 3, `only ${st.connects} connections were made`);
    await waitFor('the journal trim', () => journal.status.consumedSeq >= st.lastAckedSeq);
    assert.ok(trims.length > 0);
    assert.ok((await rig.replicaBytes()).equals(model), 'replica equals the model');
    assertAppliedOnce((await rig.sink.state(rig.diskKey)).applied, st.lastAckedSeq);
  } finally {
    await sender.close();
    await proxy.close();
    await rig.close();
  }
});

test('bandwidth limit is honoured within 20%', async () => {
  const size = 4 * MiB;
  const limit = 2 * MiB;
  const rnd = new SeededRandom(7);
  const rig = await startRig({
    sizeBytes: size,
    sender: { bandwidthBytesPerSec: limit, syncChunkBytes: 128 * KiB },
    before: async (source) => {
      await source.write(0, rnd.bytes(3 * MiB), NO_FUA);
      await source.flush();
    },
  });
  try {
    await rig.caughtUp();
    const sync = rig.sender.status(rig.diskKey).lastSync;
    assert.ok(sync !== null && sync.durationMs !== null && sync.wireBytes > 2.5 * MiB);
    const rate = sync.wireBytes / (sync.durationMs / 1000);
    assert.ok(
      rate <= limit * 1.2 && rate >= limit * 0.8,
      `rate ${Math.round(rate)} B/s against a limit of ${limit}`,
    );
  } finally {
    await rig.close();
  }
});

test('senders and receivers are authenticated by pinned fingerprints', async () => {
  const [primary, recovery] = await hostIdentities();
  const rig = await startRig({ sizeBytes: MiB });
  try {
    await rig.caughtUp();
    // A receiver that does not know the primary refuses it.
    const stranger = new Receiver({
      identity: recovery,
      sink: rig.sink,
      allowedSenders: [recovery.fingerprint],
      port: 0,
    });
    const { port } = await stranger.listen();
    const s1 = new Sender({ identity: primary, backoffMinMs: 10, backoffMaxMs: 20 });
    s1.addDisk({
      diskKey: 'other/disk',
      source: rig.source,
      receiver: { host: '127.0.0.1', port, fingerprint: recovery.fingerprint },
      statePath: join(rig.dir, 's1.json'),
    });
    await waitFor('a refusal', () => stranger.stats.refused > 0);
    assert.equal(s1.status('other/disk').state !== 'streaming', true);
    await s1.close();
    await stranger.close();
    // A sender pinning another certificate refuses the receiver.
    const s2 = new Sender({ identity: primary, backoffMinMs: 10, backoffMaxMs: 20 });
    s2.addDisk({
      diskKey: 'other/disk',
      source: rig.source,
      receiver: { host: '127.0.0.1', port: rig.port, fingerprint: primary.fingerprint },
      statePath: join(rig.dir, 's2.json'),
    });
    await waitFor('a pinning error', () => /pinned/.test(s2.status('other/disk').lastError ?? ''));
    assert.equal(s2.status('other/disk').state, 'error');
    await s2.close();
  } finally {
    await rig.close();
  }
});

test('a sender says a copy is due from the moment it starts, before it connects, and until the copy is acknowledged', async () => {
  const [primary, recovery] = await hostIdentities();
  const rig = await startRig({ sizeBytes: MiB });
  const nobody = createServer();
  await new Promise<void>((resolve) => nobody.listen(0, '127.0.0.1', resolve));
  const { port } = nobody.address() as { port: number };
  await new Promise<void>((resolve) => nobody.close(() => resolve()));
  const fresh = new Sender({ identity: primary, backoffMinMs: 10, backoffMaxMs: 20 });
  try {
    // No receiver listens: a new replica's sender connects forever, and is not taken for a caught-up one.
    fresh.addDisk({
      diskKey: 'new/disk',
      source: rig.source,
      receiver: { host: '127.0.0.1', port, fingerprint: recovery.fingerprint },
      statePath: join(rig.dir, 'fresh.json'),
    });
    assert.equal(fresh.status('new/disk').syncDue, 'initial');
    await rig.caughtUp();
    assert.equal(rig.sender.status(rig.diskKey).syncDue, null);
    const ticket = rig.sender.requestResync(rig.diskKey, 'hash');
    assert.equal(rig.sender.status(rig.diskKey).syncDue, 'resync');
    await waitFor(
      'the hash resync',
      () => rig.sender.status(rig.diskKey).resyncRequests.done >= ticket.request,
    );
    assert.equal(rig.sender.status(rig.diskKey).syncDue, null);
  } finally {
    await fresh.close();
    await rig.close();
  }
});
