import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { JournalRecord } from '../disk/index.ts';
import { encodeRecord } from '../disk/journal-record.ts';
import { HavenError } from '../errors/index.ts';
import type { BlockBackend } from '../nbd/block-backend.ts';
import { ModelDisk, modelAt, randomHistory } from '../testing/replica-test-model.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import { OverlayView } from './overlay-view.ts';
import { formatRecoveryPointRef } from './recovery-point-ref.ts';
import { ReplicaStore } from './replica-store.ts';

const MiB = 1 << 20;
const HOUR = 3600_000;

async function readAll(view: BlockBackend): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0; at < view.size; at += 4 * MiB)
    parts.push(await view.read(at, Math.min(4 * MiB, view.size - at)));
  return Buffer.concat(parts);
}

function firstDifference(a: Buffer, b: Buffer): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function assertSameBytes(actual: Buffer, expected: Buffer, what: string): void {
  if (!actual.equals(expected))
    assert.fail(`${what}: first difference at byte ${firstDifference(actual, expected)}`);
}

/** Appends a history in random batches, resending overlaps now and then (a reconnect). */
async function appendRandomly(store: ReplicaStore, key: string, history: JournalRecord[], rnd: SeededRandom) {
  for (let i = 0; i < history.length; ) {
    const n = rnd.int(1, 40);
    const back = rnd.next() < 0.1 ? rnd.int(0, Math.min(i, 5)) : 0;
    const durable = await store.append(key, history.slice(i - back, i + n));
    i = Math.min(history.length, i + n);
    assert.equal(durable, history[i - 1]?.seq);
  }
}

for (const seed of [1, 2, 3]) {
  describe(`replica store, seeded history ${seed}`, () => {
    const size = (seed === 2 ? 16 : 4) * MiB + (seed === 3 ? 512 * 3 : 0);
    const rnd = new SeededRandom(seed * 7919);
    const start = 1_700_000_000_000;
    // 1200 records, one every 10 s: 3 h 20 min of source time.
    const history = randomHistory(seed, { size, count: 1200, startTimeMs: start, stepMs: 10_000 });
    const initial = rnd.bytes(size);
    initial.fill(0, 0, MiB); // a hole in the copied disk
    const key = `machine-${seed}/disk-0`;
    let dir: string;
    let store: ReplicaStore;
    let clock = start;
    const options = { segmentBytes: 256 << 10, mergeStepBytes: 2 * MiB, now: () => clock };
    /** Model snapshots at some recovery points (by sequence). */
    const snapshots = new Map<number, Buffer>();

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'replica-store-'));
      store = await ReplicaStore.open(dir, options);
      await store.ensureDisk(key, size);
      await store.ensureDisk(key, size);
      await assert.rejects(store.ensureDisk(key, size + 512), (e: HavenError) => e.code === 'conflict');
      assert.equal(await store.durableSequence(key), -1);
      await assert.rejects(store.append(key, history.slice(0, 3)), (e: HavenError) => e.code === 'conflict');
      // Initial replication: the copy arrives in pieces (zeroes as null) while records follow from seq 1.
      await store.beginSync(key, { id: 'initial', kind: 'initial', fromSeq: 1, regions: null });
      assert.equal(await store.durableSequence(key), 0);
      await store.append(key, history.slice(0, 50));
      for (let at = 0; at < size; at += MiB) {
        const n = Math.min(MiB, size - at);
        const piece = initial.subarray(at, at + n);
        await store.writeSyncData(key, 'initial', at, piece.every((b) => b === 0) ? null : piece, n);
      }
      assert.deepEqual(store.listPoints(key, start), [], 'no point inside a sync');
      await store.completeSync(key, 'initial', 40);
      const model = new ModelDisk(size, initial);
      const firstFlush = history.find((r) => r.kind === 'flush' && r.seq >= 40)?.seq;
      const points = history.filter((r) => r.kind === 'flush' || r.kind === 'marker');
      const chosen = new Set(
        Array.from({ length: 10 }, () => rnd.pick(points).seq).filter((s) => s >= (firstFlush ?? 0)),
      );
      chosen.add(points.at(-1)?.seq ?? 0);
      for (const r of history) {
        model.apply(r);
        if (chosen.has(r.seq)) snapshots.set(r.seq, model.copy());
      }
      await appendRandomly(store, key, history.slice(50), rnd);
    });

    after(async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });

    test('every flush and marker after the sync is a point, with type, group id and size', () => {
      clock = start + 1200 * 10_000;
      const all = store.listPoints(key, start + 1000);
      const firstFlush = history.find((r) => r.kind === 'flush' && r.seq >= 40)?.seq ?? -1;
      const expected = history.filter(
        (r) => r.seq >= firstFlush && (r.kind === 'flush' || r.kind === 'marker'),
      );
      assert.deepEqual(
        all.map((p) => p.seq),
        expected.map((r) => r.seq),
      );
      for (const [i, p] of all.entries()) {
        const r = expected[i] as JournalRecord;
        assert.equal(p.id, formatRecoveryPointRef({ kind: 'disk', diskKey: key, seq: r.seq }));
        assert.equal(p.timeMs, r.timeMs);
        assert.equal(p.type, r.marker?.type === 'app-consistent' ? 'app-consistent' : 'crash-consistent');
        assert.equal(p.groupPointId, r.marker?.type === 'group' ? r.marker.id : null);
      }
      const total = all.reduce((n, p) => n + p.sizeBytes, 0);
      const journal = history
        .filter((r) => r.seq > 50 && r.seq <= (all.at(-1)?.seq ?? 0))
        .reduce((n, r) => n + 48 + (r.data?.length ?? (r.marker ? JSON.stringify(r.marker).length : 0)), 0);
      assert.ok(total >= journal, `point sizes ${total} cover the journal after seq 50 (${journal})`);
      // Any point in time: a time between two points resolves to the earlier one.
      const p = all.at(-5);
      assert.ok(p !== undefined);
      assert.equal(store.pointAt(key, p.timeMs + 1).seq, p.seq);
    });

    test('views at random points equal the model replayed to them', async () => {
      for (const [seq, expected] of snapshots) {
        const view = await store.openView(key, seq);
        assertSameBytes(await readAll(view), expected, `view at ${seq}`);
        await view.close();
      }
    });

    test('block status: reported holes read as zeroes, written data is never a hole', async () => {
      const seq = Math.max(...snapshots.keys());
      const view = await store.openView(key, seq);
      const expected = snapshots.get(seq) as Buffer;
      let holes = 0;
      for (const e of await view.blockStatus(0, size)) {
        if ((e.flags & 2) !== 0) {
          holes += e.length;
          assert.ok(expected.subarray(e.offset, e.offset + e.length).every((b) => b === 0));
        }
      }
      assert.ok(holes > 0, 'the view has holes (the zeroed first MiB, trims)');
      await view.close();
    });

    test('retention thins the older points and merges the expired ones into the base', async () => {
      const now = start + 1200 * 10_000; // last record at now - 10 s
      const policy = { fineWindowMs: HOUR, retentionMs: 2 * HOUR, thinIntervalMs: 15 * 60_000 };
      await store.setRetention(key, policy);
      const openAt = Math.max(...[...snapshots.keys()].filter((s) => s < 600));
      const pinned = await store.openView(key, openAt);
      const before = store.listPoints(key, now);
      await store.runRetention(key, now);
      const status = store.diskStatus(key);
      assert.ok(status.baseSeq <= openAt, 'an open view pins its point');
      assertSameBytes(await readAll(pinned), snapshots.get(openAt) as Buffer, 'pinned view after a merge');
      await pinned.close();
      await store.runRetention(key, now);
      const points = store.listPoints(key, now);
      const seqs = (list: { seq: number }[]) => list.map((p) => p.seq);
      assert.deepEqual(seqs(points), seqs(before));
      assert.deepEqual(points.slice(1), before.slice(1), 'sizes of the points after the base do not change');
      const base = store.diskStatus(key).baseSeq;
      assert.equal(base, points[0]?.seq, 'merged through the oldest kept point');
      assert.ok(points.every((p) => p.timeMs >= now - 2 * HOUR));
      // Between the windows: at most one point of each kind per interval.
      const buckets = new Set<string>();
      for (const p of points.filter((p) => p.timeMs < now - HOUR)) {
        const kind = p.type === 'app-consistent' ? 'a' : p.groupPointId === null ? 'c' : 'g';
        const bucket = `${kind}${Math.floor(p.timeMs / (kind === 'a' ? HOUR : 15 * 60_000))}`;
        assert.ok(!buckets.has(bucket), `one point per ${bucket}`);
        buckets.add(bucket);
      }
      for (const [seq, expected] of snapshots) {
        if (seq < base) {
          await assert.rejects(store.openView(key, seq), (e: HavenError) => e.code === 'conflict');
          continue;
        }
        const view = await store.openView(key, seq);
        assertSameBytes(await readAll(view), expected, `view at ${seq} after merging through ${base}`);
        await view.close();
      }
      // A reopened store sees the same catalog and contents.
      await store.close();
      store = await ReplicaStore.open(dir, options);
      assert.deepEqual(seqs(store.listPoints(key, now)), seqs(points));
      const last = Math.max(...snapshots.keys());
      const view = await store.openView(
        key,
        formatRecoveryPointRef({ kind: 'disk', diskKey: key, seq: last }),
      );
      assertSameBytes(await readAll(view), snapshots.get(last) as Buffer, 'after reopening');
      await view.close();
    });

    test('a writable view reads the point plus its own writes, and journals exactly them', async () => {
      const seq = Math.max(...snapshots.keys());
      const model = new ModelDisk(size, snapshots.get(seq));
      const view = await store.openView(key, seq, { writable: true, viewId: 'test-failover' });
      assert.ok(view instanceof OverlayView);
      const ops = randomHistory(seed + 100, { size, count: 60, maxWrite: 200_000 }).filter(
        (r) => r.kind === 'write' || r.kind === 'trim' || r.kind === 'zero',
      );
      for (const op of ops) {
        if (op.kind === 'write') await view.write(op.offset, op.data as Buffer, { fua: false });
        else if (op.kind === 'trim') await view.trim(op.offset, op.length, { fua: false });
        else await view.writeZeroes(op.offset, op.length, { fua: false, mayTrim: false });
        model.apply(op);
      }
      await view.flush();
      assertSameBytes(await readAll(view), model.bytes, 'writable view');
      for (const e of await view.blockStatus(0, size)) {
        if ((e.flags & 2) !== 0)
          assert.ok(model.bytes.subarray(e.offset, e.offset + e.length).every((b) => b === 0));
      }
      const journaled: JournalRecord[] = [];
      for await (const r of view.journal.records(1)) if (r.kind !== 'flush') journaled.push(r);
      assert.deepEqual(
        journaled.map((r) => [r.kind, r.offset, r.length, r.data?.toString('base64')]),
        ops.map((r) => [r.kind, r.offset, r.length, r.data?.toString('base64')]),
      );
      await view.close();
      // Kept across a restart: reopening the id resumes the overlay, and it pins its point.
      await store.close();
      store = await ReplicaStore.open(dir, options);
      await store.runRetention(key, clock + HOUR);
      assert.ok(store.diskStatus(key).baseSeq <= seq);
      const again = await store.openView(key, seq, { writable: true, viewId: 'test-failover' });
      assertSameBytes(await readAll(again), model.bytes, 'writable view after reopening');
      await again.close();
      await store.discardView(key, 'test-failover');
    });

    test('commit keeps the chosen point and deletes the others', async () => {
      const points = store.listPoints(key);
      const chosen = (points.at(-3) ?? points.at(-1))?.seq;
      assert.ok(chosen !== undefined && points.length >= 3);
      await assert.rejects(store.commit(key, `${key}@999999`), (e: HavenError) => e.code === 'not_found');
      await store.commit(key, formatRecoveryPointRef({ kind: 'disk', diskKey: key, seq: chosen }));
      assert.deepEqual(
        store.listPoints(key).map((p) => p.seq),
        [chosen],
      );
      assert.equal(await store.durableSequence(key), chosen);
      const view = await store.openView(key, chosen);
      assertSameBytes(await readAll(view), modelAt(size, history, chosen, initial), 'committed point');
      await view.close();
      assert.equal(store.diskStatus(key).logBytes, 0);
    });
  });
}

describe('replica store input checks', () => {
  test('bad records are refused without storing anything', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'replica-bad-'));
    const store = await ReplicaStore.open(dir);
    try {
      await store.ensureDisk('d', MiB);
      const ok: JournalRecord = {
        seq: 0,
        timeMs: 1,
        kind: 'write',
        offset: 0,
        length: 4,
        data: Buffer.from('abcd'),
      };
      const past: JournalRecord = { ...ok, seq: 1, offset: MiB - 2 };
      await assert.rejects(store.append('d', [ok, past]), (e: HavenError) => e.code === 'bad_request');
      assert.equal(await store.durableSequence('d'), -1);
      const short: JournalRecord = { ...ok, length: 8 };
      await assert.rejects(store.append('d', [short]), (e: HavenError) => e.code === 'bad_request');
      assert.equal(await store.append('d', [ok]), 0);
      await assert.rejects(store.append('d', [{ ...ok, seq: 2 }]), (e: HavenError) => e.code === 'conflict');
      // A record that carries its journaled checksum is checked against it before anything is stored.
      const next: JournalRecord = { ...ok, seq: 1 };
      const crc = (encodeRecord(next)[0] as Buffer).readUInt32LE(44);
      const later: JournalRecord = {
        ...ok,
        seq: 2,
        crc: (encodeRecord({ ...ok, seq: 2 })[0] as Buffer).readUInt32LE(44),
      };
      await assert.rejects(
        store.append('d', [
          { ...next, crc },
          { ...later, data: Buffer.from('abce') },
        ]),
        /journal record 2 does not match the checksum it was journaled with/,
      );
      assert.equal(await store.durableSequence('d'), 0);
      assert.equal(await store.append('d', [{ ...next, crc }, later]), 2);
      await assert.rejects(store.append('nope', [ok]), (e: HavenError) => e.code === 'not_found');
      await assert.rejects(
        store.writeSyncData('d', 'none', 0, null, 512),
        (e: HavenError) => e instanceof HavenError && e.code === 'conflict',
      );
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

test('appends handed on before earlier ones are stored: each resolves durable and in order, and a reopened store holds them all', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'replica-store-pipelined-'));
  const size = 4 * MiB;
  const key = 'machine-9/disk-0';
  const history = randomHistory(9, { size, count: 600, startTimeMs: 1_700_000_000_000, stepMs: 1000 });
  const rnd = new SeededRandom(99);
  try {
    const store = await ReplicaStore.open(dir, { segmentBytes: 256 << 10 });
    await store.ensureDisk(key, size);
    await store.beginSync(key, { id: 'initial', kind: 'initial', fromSeq: 1, regions: null });
    await store.completeSync(key, 'initial', 0);
    const calls: Promise<number>[] = [];
    const lastSeqs: number[] = [];
    for (let i = 0; i < history.length; ) {
      const n = rnd.int(1, 30);
      // Now and then a batch overlapping the previous one (a resend).
      const back = rnd.next() < 0.1 ? rnd.int(0, Math.min(i, 5)) : 0;
      calls.push(store.append(key, history.slice(i - back, i + n)));
      i = Math.min(history.length, i + n);
      lastSeqs.push(history[i - 1]?.seq ?? 0);
    }
    const order: number[] = [];
    const results = await Promise.all(
      calls.map((p, i) =>
        p.then((durable) => {
          order.push(i);
          return durable;
        }),
      ),
    );
    results.forEach((durable, i) => {
      assert.ok(durable >= (lastSeqs[i] ?? 0), `append ${i} resolved with ${durable} before its records`);
    });
    assert.deepEqual(
      order,
      calls.map((_, i) => i),
    );
    const last = history.at(-1)?.seq ?? 0;
    assert.equal(await store.durableSequence(key), last);
    await store.close();

    const reopened = await ReplicaStore.open(dir, { segmentBytes: 256 << 10 });
    try {
      assert.equal(await reopened.durableSequence(key), last);
      const view = await reopened.openView(key, last);
      try {
        assertSameBytes(await readAll(view), modelAt(size, history, last), 'the replica');
      } finally {
        await view.close();
      }
    } finally {
      await reopened.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** Byte ranges of a mask's set bytes. */
function maskRegions(mask: Uint8Array): Array<{ offset: number; length: number }> {
  const out: Array<{ offset: number; length: number }> = [];
  for (let i = 0; i < mask.length; ) {
    if (!mask[i]) {
      i++;
      continue;
    }
    let j = i;
    while (j < mask.length && mask[j]) j++;
    out.push({ offset: i, length: j - i });
    i = j;
  }
  return out;
}

describe('an adopted base: the ranges written into it, exactly', () => {
  const size = 4 * MiB;
  const start = 1_700_000_000_000;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'replica-written-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  for (const seed of [11, 12]) {
    test(`seed ${seed}: the sync's copied pieces and every record, merged by retention or at restore`, async () => {
      const rnd = new SeededRandom(seed);
      let clock = start;
      const options = { segmentBytes: 128 << 10, mergeStepBytes: 512 << 10, now: () => clock };
      const image = join(dir, `image-${seed}.img`);
      const initial = rnd.bytes(size);
      await writeFile(image, initial);
      const key = `server-${seed}/disk0`;
      let store = await ReplicaStore.open(join(dir, `store-${seed}`), options);
      await store.adoptImage(key, image, size, 0);
      const model = new ModelDisk(size, initial);
      const written = new Uint8Array(size);
      const mark = (offset: number, length: number) => written.fill(1, offset, offset + length);
      // The reverse resync: diverged regions announced, only some of their pieces copied (the rest equal).
      const regions = Array.from({ length: 6 }, (_, i) => ({
        offset: i * 640 * 1024 + 4096,
        length: 96 * 1024,
      }));
      await store.beginSync(key, { id: 'reverse', kind: 'resync', fromSeq: 1, regions });
      for (const r of regions) {
        if (rnd.next() < 0.4) continue;
        const at = r.offset + rnd.int(0, 8) * 4096;
        const n = rnd.int(1, 8) * 512;
        const zero = rnd.next() < 0.3;
        const data = zero ? null : rnd.bytes(n);
        await store.writeSyncData(key, 'reverse', at, data, n);
        if (data) data.copy(model.bytes, at);
        else model.bytes.fill(0, at, at + n);
        mark(at, n);
      }
      await store.completeSync(key, 'reverse', 1);
      const history = randomHistory(seed, { size, count: 400, startTimeMs: start, stepMs: 10_000 });
      await store.setRetention(key, { fineWindowMs: 300_000, retentionMs: 600_000, thinIntervalMs: 120_000 });
      for (let i = 0; i < history.length; i += 50) {
        const batch = history.slice(i, i + 50);
        await store.append(key, batch);
        for (const r of batch) {
          model.apply(r);
          if (r.kind === 'write' || r.kind === 'trim' || r.kind === 'zero') mark(r.offset, r.length);
        }
        clock = (batch.at(-1)?.timeMs ?? clock) + 1000;
        await store.runRetention(key, clock);
        if (i === 200) {
          // Reopened: what was merged before stays known.
          await store.close();
          store = await ReplicaStore.open(join(dir, `store-${seed}`), options);
        }
      }
      assert.ok(store.diskStatus(key).baseSeq > 200, 'retention merged records into the base');
      const { written: answered } = await store.restoreImage(key, image);
      assert.deepEqual(answered, maskRegions(written));
      assertSameBytes(await readFile(image), model.bytes, 'the restored image');
      // Asked again: moved out already, so no longer known.
      assert.deepEqual(await store.restoreImage(key, image), { written: null });
      await store.close();
    });
  }

  test('a sync interrupted by a restart counts every range it announced', async () => {
    const image = join(dir, 'image-restart.img');
    await writeFile(image, Buffer.alloc(size, 7));
    const key = 'server-r/disk0';
    const options = { segmentBytes: 128 << 10, mergeStepBytes: 512 << 10, now: () => start };
    let store = await ReplicaStore.open(join(dir, 'store-r'), options);
    await store.adoptImage(key, image, size, 0);
    const regions = [
      { offset: 0, length: 8192 },
      { offset: MiB, length: 65536 },
    ];
    await store.beginSync(key, { id: 'reverse', kind: 'resync', fromSeq: 1, regions });
    await store.writeSyncData(key, 'reverse', MiB, Buffer.alloc(512, 1), 512);
    await store.close();
    store = await ReplicaStore.open(join(dir, 'store-r'), options);
    await store.beginSync(key, { id: 'reverse', kind: 'resync', fromSeq: 1, regions });
    await store.completeSync(key, 'reverse', 1);
    assert.deepEqual((await store.restoreImage(key, image)).written, regions);
    await store.close();
  });

  test('a replica that was not adopted answers null', async () => {
    const key = 'vm-n/disk0';
    const store = await ReplicaStore.open(join(dir, 'store-n'), { now: () => start });
    await store.ensureDisk(key, MiB);
    await store.beginSync(key, { id: 'initial', kind: 'initial', fromSeq: 1, regions: null });
    await store.completeSync(key, 'initial', 1);
    assert.deepEqual(await store.restoreImage(key, join(dir, 'restored-n.img')), { written: null });
    await store.close();
  });
});
