import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ReplicaStore } from '../replica/index.ts';
import { hostIdentities, openSource, waitFor } from '../testing/replication-test-fixture.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import { Receiver } from './receiver.ts';
import { Sender } from './sender.ts';

const MiB = 1 << 20;

/** A source disk replicated over TLS into the real replica store, in a fresh directory. */
async function storeRig(prefix: string, size: number, capacityBytes?: number) {
  const [primary, recovery] = await hostIdentities();
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const source = await openSource(dir, size, capacityBytes);
  const store = await ReplicaStore.open(join(dir, 'store'));
  const receiver = new Receiver({
    identity: recovery,
    sink: store,
    allowedSenders: [primary.fingerprint],
    port: 0,
  });
  const { port } = await receiver.listen();
  const sender = new Sender({ identity: primary, backoffMinMs: 20, backoffMaxMs: 100 });
  return {
    source,
    store,
    sender,
    addDisk: (diskKey: string) =>
      sender.addDisk({
        diskKey,
        source,
        receiver: { host: '127.0.0.1', port, fingerprint: recovery.fingerprint },
        statePath: join(dir, 'sender-state.json'),
      }),
    close: async () => {
      await sender.close();
      await receiver.close();
      await store.close();
      await source.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

test('replication into the real replica store: views at flush points equal the source then, across a cut connection and a bitmap resync', async () => {
  const size = 8 * MiB;
  const { source, store, sender, addDisk, close } = await storeRig('haven-repl-store-', size, 4 * MiB);
  const diskKey = 'machine-2/disk-0';
  try {
    // Data before replication starts: the initial copy must carry it.
    const rnd = new SeededRandom(21);
    const model = Buffer.alloc(size);
    const first = rnd.bytes(MiB);
    first.copy(model, 2 * MiB);
    await source.write(2 * MiB, first, { fua: false });
    await source.flush();
    addDisk(diskKey);
    const snapshots = new Map<number, Buffer>();
    const history = async (ops: number) => {
      for (let i = 0; i < ops; i++) {
        const length = rnd.int(1, 8) * 4096;
        const offset = rnd.int(0, (size - length) / 4096) * 4096;
        if (rnd.next() < 0.85) {
          const data = rnd.bytes(length);
          data.copy(model, offset);
          await source.write(offset, data, { fua: false });
        } else {
          model.fill(0, offset, offset + length);
          await source.trim(offset, length, { fua: false });
        }
        if (i % 20 === 19) {
          await source.flush();
          if (source.journal.mode === 'journal')
            snapshots.set(source.journal.status.nextSeq - 1, Buffer.from(model));
        }
        if (i === ops / 2) sender.dropConnection(diskKey);
      }
      await source.flush();
    };
    await history(100);
    // Overflow the 4 MiB journal while paused: resumed replication resyncs from the bitmap.
    sender.pause(diskKey);
    await waitFor('pause', () => sender.status(diskKey).state === 'paused');
    await history(300);
    assert.equal(source.journal.mode, 'bitmap');
    sender.resume(diskKey);
    await waitFor(
      'catch-up',
      () => {
        const st = sender.status(diskKey);
        return (
          st.state === 'streaming' &&
          !st.resyncRequired &&
          st.lastAckedSeq >= source.journal.status.writtenSeq
        );
      },
      20_000,
      () => JSON.stringify({ ...sender.status(diskKey), journal: source.journal.status }),
    );
    assert.equal(sender.status(diskKey).lastSync?.kind, 'bitmap');
    await history(60);
    await waitFor('catch-up', () => {
      const st = sender.status(diskKey);
      return (
        st.state === 'streaming' && !st.resyncRequired && st.lastAckedSeq >= source.journal.status.writtenSeq
      );
    });
    const points = store.listPoints(diskKey);
    const latest = await store.openView(diskKey, (points.at(-1) as { seq: number }).seq);
    try {
      assert.ok((await latest.read(0, size)).equals(model), 'latest point equals the source');
    } finally {
      await latest.close();
    }
    const pointSeqs = new Set(points.map((p) => p.seq));
    let checked = 0;
    for (const [seq, snapshot] of snapshots) {
      if (!pointSeqs.has(seq)) continue;
      const view = await store.openView(diskKey, seq);
      try {
        assert.ok(
          (await view.read(0, size)).equals(snapshot),
          `point ${seq} equals the source at that flush`,
        );
      } finally {
        await view.close();
      }
      checked++;
    }
    assert.ok(checked >= 3, `only ${checked} points were compared`);
  } finally {
    await close();
  }
});

test('a journal record damaged on the source is refused by the replica store, which checks the checksum the sender carried', async () => {
  const { source, store, sender, addDisk, close } = await storeRig('haven-repl-crc-', 4 * MiB);
  const diskKey = 'machine-3/disk-0';
  try {
    addDisk(diskKey);
    const caughtUp = () => sender.status(diskKey).lastAckedSeq >= source.journal.status.writtenSeq;
    await waitFor(
      'the initial sync',
      () => sender.status(diskKey).lastSync?.completed === true && caughtUp(),
    );
    sender.pause(diskKey);
    await waitFor('pause', () => sender.status(diskKey).state === 'paused');
    const pattern = Buffer.alloc(64 << 10, 0x5a);
    await source.write(MiB, pattern, { fua: false });
    await source.flush();
    const damagedSeq = source.journal.status.writtenSeq - 1;
    // One byte of the write's data flips in the journal file, after its checksum was written.
    let damaged = false;
    for (const name of await readdir(source.journal.dir)) {
      if (!name.endsWith('.seg')) continue;
      const path = join(source.journal.dir, name);
      const bytes = await readFile(path);
      const at = bytes.indexOf(pattern);
      if (at < 0) continue;
      bytes[at + 1000] = 0x5b;
      await writeFile(path, bytes);
      damaged = true;
    }
    assert.ok(damaged, 'the write was found in the journal');
    sender.resume(diskKey);
    await waitFor('the refusal', () =>
      /journal record \d+ does not match the checksum it was journaled with/.test(
        sender.status(diskKey).lastError ?? '',
      ),
    );
    assert.ok((await store.durableSequence(diskKey)) < damagedSeq, 'the damaged record was not stored');
  } finally {
    await close();
  }
});
