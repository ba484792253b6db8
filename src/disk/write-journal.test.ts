import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { HavenError } from '../errors/index.ts';
import type { FileSync } from '../storage/file-sync.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import { listJournalRecords } from './journal-reader.ts';
import type { JournalRecord, Marker } from './journal-record.ts';
import { scanSegment } from './segment-scan.ts';
import { WriteJournal } from './write-journal.ts';

const root = await mkdtemp(join(tmpdir(), 'haven-journal-'));
after(() => rm(root, { recursive: true, force: true }));
let dirCounter = 0;
const freshDir = () => join(root, `j${dirCounter++}`);

const DISK = 4 << 20;

interface ModelRecord {
  seq: number;
  kind: JournalRecord['kind'];
  offset: number;
  length: number;
  data?: Buffer;
  marker?: Marker;
}

async function readAll(journal: WriteJournal, from?: number): Promise<JournalRecord[]> {
  const out: JournalRecord[] = [];
  for await (const r of journal.records(from)) out.push(r);
  return out;
}

function assertSameRecords(actual: JournalRecord[], expected: ModelRecord[]): void {
  assert.equal(actual.length, expected.length, 'record count');
  for (const [i, e] of expected.entries()) {
    const a = actual[i] as JournalRecord;
    assert.equal(a.seq, e.seq, `seq of record ${i}`);
    assert.equal(a.kind, e.kind, `kind of ${e.seq}`);
    assert.equal(a.offset, e.offset, `offset of ${e.seq}`);
    assert.equal(a.length, e.length, `length of ${e.seq}`);
    if (e.kind === 'write') assert.ok(a.data?.equals(e.data as Buffer), `data of ${e.seq}`);
    if (e.kind === 'marker') assert.deepEqual(a.marker, e.marker);
  }
}

/** Runs a random history of operations (partly concurrent) and returns the model of the records it made. */
async function randomHistory(journal: WriteJournal, rnd: SeededRandom, ops: number): Promise<ModelRecord[]> {
  const model: ModelRecord[] = [];
  let batch: Promise<unknown>[] = [];
  for (let i = 0; i < ops; i++) {
    const kind = rnd.pick(['write', 'write', 'write', 'trim', 'zero', 'flush', 'marker'] as const);
    const offset = rnd.int(0, DISK - 1);
    const length = rnd.int(1, Math.min(DISK - offset, rnd.pick([512, 4096, 70000])));
    const seq = journal.status.nextSeq;
    if (kind === 'write') {
      const data = rnd.bytes(length);
      model.push({ seq, kind, offset, length, data });
      batch.push(journal.recordWrite(offset, data).then((s) => assert.equal(s, seq)));
    } else if (kind === 'trim') {
      model.push({ seq, kind, offset, length });
      batch.push(journal.recordTrim(offset, length));
    } else if (kind === 'zero') {
      model.push({ seq, kind, offset, length });
      batch.push(journal.recordZero(offset, length));
    } else if (kind === 'flush') {
      model.push({ seq, kind, offset: 0, length: 0 });
      batch.push(journal.flush().then((s) => assert.equal(s, seq)));
    } else {
      const marker: Marker = {
        type: rnd.pick(['app-consistent', 'group'] as const),
        id: `m${i}`,
        label: `point ${i}`,
      };
      model.push({ seq, kind, offset: 0, length: 0, marker });
      batch.push(journal.addMarker(marker));
    }
    if (rnd.next() < 0.3) {
      await Promise.all(batch);
      batch = [];
    }
  }
  await Promise.all(batch);
  return model;
}

describe('WriteJournal', () => {
  it('keeps every record, in order, across reopen (random histories)', async () => {
    for (let seed = 1; seed <= 6; seed++) {
      const rnd = new SeededRandom(seed);
      const dir = freshDir();
      const segmentBytes = rnd.pick([4096, 65536, 1 << 20]);
      const options = { diskSize: DISK, capacityBytes: 1 << 30, segmentBytes };
      let journal = await WriteJournal.open(dir, options);
      const model = await randomHistory(journal, rnd, 80);
      assertSameRecords(await readAll(journal), model);
      await journal.close();
      journal = await WriteJournal.open(dir, options);
      assertSameRecords(await readAll(journal), model);
      // Appending continues the sequence; a partial trim keeps what is not consumed.
      const more = await randomHistory(journal, rnd, 20);
      const all = [...model, ...more];
      const cut = rnd.int(1, all.length - 1);
      await journal.trimThrough(cut);
      assertSameRecords(await readAll(journal), all.slice(cut));
      await journal.close();
      journal = await WriteJournal.open(dir, options);
      assert.equal(journal.status.consumedSeq, cut);
      assertSameRecords(await readAll(journal), all.slice(cut));
      await journal.close();
    }
  });

  it('recovers exactly the complete records when the last segment is torn at any byte', async () => {
    const rnd = new SeededRandom(42);
    const dir = freshDir();
    const options = { diskSize: DISK, capacityBytes: 1 << 30, segmentBytes: 64 << 10 };
    const journal = await WriteJournal.open(dir, options);
    const model = await randomHistory(journal, rnd, 60);
    await journal.close();
    const segments = (await readdir(dir)).filter((n) => n.endsWith('.seg')).sort();
    assert.ok(segments.length >= 2, 'history spans several segments');
    const lastName = segments.at(-1) as string;
    const lastBytes = await readFile(join(dir, lastName));
    const firstSeqOfLast = Number(lastName.slice(8, 24));
    const ends: number[] = [];
    scanSegment(lastName, lastBytes, firstSeqOfLast, true, (r, pos) =>
      ends.push(pos + 48 + (r.data?.length ?? (r.kind === 'marker' ? lastBytes.readUInt32LE(pos + 40) : 0))),
    );
    for (let trial = 0; trial < 15; trial++) {
      const cutAt = trial === 0 ? 0 : rnd.int(0, lastBytes.length - 1);
      const copy = freshDir();
      await cp(dir, copy, { recursive: true });
      await truncate(join(copy, lastName), cutAt);
      const kept = ends.filter((end) => end <= cutAt).length;
      const expected = model.filter((m) => m.seq < firstSeqOfLast + kept);
      const reopened = await WriteJournal.open(copy, options);
      assertSameRecords(await readAll(reopened), expected);
      // The torn bytes are gone: the next append continues right after the last complete record.
      const next = await reopened.recordWrite(0, Buffer.from('after crash'));
      assert.equal(next, firstSeqOfLast + kept);
      await reopened.close();
      const again = await WriteJournal.open(copy, options);
      assert.equal((await readAll(again)).length, expected.length + 1);
      await again.close();
    }
  });

  it('reports a corrupt record in the middle instead of skipping it, but treats a bad last record as torn', async () => {
    const dir = freshDir();
    const options = { diskSize: DISK, capacityBytes: 1 << 30, segmentBytes: 1 << 20 };
    const journal = await WriteJournal.open(dir, options);
    for (let i = 0; i < 10; i++) await journal.recordWrite(i * 4096, Buffer.alloc(1000, i + 1));
    await journal.close();
    const [name] = (await readdir(dir)).filter((n) => n.endsWith('.seg'));
    const path = join(dir, name as string);
    const pristine = await readFile(path);
    const recordSize = 48 + 1000;

    const middle = Buffer.from(pristine);
    const flip = (buf: Buffer, at: number) => buf.writeUInt8((buf.readUInt8(at) ^ 0xff) >>> 0, at);
    flip(middle, 4 * recordSize + 48 + 10); // data byte of record 5
    await writeFile(path, middle);
    await assert.rejects(WriteJournal.open(dir, options), (e: unknown) => {
      assert.ok(e instanceof HavenError);
      assert.equal(e.details.kind, 'journal_corrupt');
      assert.equal(e.details.position, 4 * recordSize);
      return true;
    });

    const tail = Buffer.from(pristine);
    flip(tail, 9 * recordSize + 48 + 10); // data byte of the last record
    await writeFile(path, tail);
    const reopened = await WriteJournal.open(dir, options);
    assert.deepEqual(
      (await readAll(reopened)).map((r) => r.seq),
      [1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    await reopened.close();
  });

  it('shares one fdatasync among concurrent flushes (group commit)', async () => {
    let syncs = 0;
    const counting: FileSync = {
      datasync: async (fh) => {
        syncs++;
        await fh.datasync();
      },
    };
    const journal = await WriteJournal.open(freshDir(), {
      diskSize: DISK,
      capacityBytes: 1 << 30,
      fileSync: counting,
    });
    await journal.recordWrite(0, Buffer.alloc(4096, 1));
    syncs = 0;
    const seqs = await Promise.all(Array.from({ length: 20 }, () => journal.flush()));
    assert.equal(new Set(seqs).size, 20, 'each flush has its own boundary record');
    assert.ok(syncs <= 2, `20 concurrent flushes took ${syncs} fdatasyncs`);
    syncs = 0;
    for (let i = 0; i < 5; i++) await journal.flush();
    assert.equal(syncs, 5, 'sequential flushes each sync');
    assert.equal(journal.status.durableSeq, journal.status.writtenSeq);
    await journal.close();
  });

  it('falls back to a persisted dirty bitmap when full, and never forgets an acknowledged write', async () => {
    const rnd = new SeededRandom(7);
    const dir = freshDir();
    const region = 65536;
    // Each fdatasync of the bitmap snapshots its bytes: an acknowledged write's bit must be in the last snapshot.
    let durableBitmap = Buffer.alloc(0);
    const snapshotting: FileSync = {
      datasync: async (fh) => {
        await fh.datasync();
        const st = await fh.stat();
        const buf = Buffer.alloc(st.size);
        await fh.read(buf, 0, st.size, 0);
        if (buf.readUInt32LE(0) === 0x42445648) durableBitmap = buf;
      },
    };
    const durableBit = (offset: number) => {
      const bit = Math.floor(offset / region);
      return ((durableBitmap[32 + (bit >> 3)] ?? 0) & (1 << (bit & 7))) !== 0;
    };
    const options = {
      diskSize: DISK,
      capacityBytes: 64 << 10,
      segmentBytes: 16 << 10,
      fileSync: snapshotting,
    };
    let journal = await WriteJournal.open(dir, options);
    const journaled: ModelRecord[] = [];
    const bitmapWrites: { offset: number; length: number }[] = [];
    let overflowed = false;
    for (let i = 0; i < 120; i++) {
      const offset = rnd.int(0, DISK - 9000);
      const data = rnd.bytes(rnd.int(1, 8192));
      const seq = await journal.recordWrite(offset, data);
      if (seq === null) {
        overflowed = true;
        bitmapWrites.push({ offset, length: data.length });
        for (let at = offset; at < offset + data.length; at += 512)
          assert.ok(durableBit(at), `bit for ${at} durable before ack`);
        assert.ok(durableBit(offset + data.length - 1));
      } else {
        assert.equal(overflowed, false, 'no record is journaled after the overflow');
        journaled.push({ seq, kind: 'write', offset, length: data.length, data });
      }
    }
    assert.ok(overflowed && journaled.length > 3);
    assert.equal(journal.resyncRequired, true);
    assert.equal(await journal.flush(), null, 'no flush record in bitmap mode');
    await assert.rejects(journal.addMarker({ type: 'app-consistent', id: 'x' }), {
      code: 'operation_not_allowed',
    });
    await journal.close();

    journal = await WriteJournal.open(dir, options);
    assert.equal(journal.mode, 'bitmap');
    assert.equal(journal.status.overflowSeq, journaled.at(-1)?.seq);
    assertSameRecords(await readAll(journal), journaled);
    const dirty = journal.dirtyRegions();
    const isDirty = (at: number) => dirty.some((r) => r.offset <= at && at < r.offset + r.length);
    for (const w of bitmapWrites) {
      for (let at = w.offset; at < w.offset + w.length; at += 4096)
        assert.ok(isDirty(at), `region of ${at} dirty`);
      assert.ok(isDirty(w.offset + w.length - 1));
    }

    await assert.rejects(journal.beginResync(), { code: 'conflict' }, 'still full before trimming');
    const used = journal.status.usedBytes;
    await journal.trimThrough(journal.status.writtenSeq);
    assert.ok(journal.status.usedBytes < used / 2, 'trimThrough freed whole segments');
    const plan = await journal.beginResync();
    assert.deepEqual(plan.regions, dirty);
    assert.equal(journal.mode, 'journal');
    const resumed = await journal.recordWrite(0, Buffer.from('journaled again'));
    assert.equal(resumed, plan.resumeSeq + 1);
    assert.equal(journal.resyncRequired, true, 'bits stay until the resync completes');
    await journal.completeResync(plan);
    assert.equal(journal.resyncRequired, false);
    assert.deepEqual(journal.dirtyRegions(), []);
    await journal.close();
    journal = await WriteJournal.open(dir, options);
    assert.equal(journal.resyncRequired, false);
    const records = await readAll(journal);
    assert.deepEqual(
      records.map((r) => r.kind),
      ['marker', 'write'],
    );
    await journal.close();
  });

  it('refuses a resync plan made stale by a new overflow', async () => {
    const journal = await WriteJournal.open(freshDir(), {
      diskSize: DISK,
      capacityBytes: 8192,
      segmentBytes: 2048,
    });
    while ((await journal.recordWrite(0, Buffer.alloc(1000, 1))) !== null) {}
    await journal.trimThrough(journal.status.writtenSeq);
    const plan = await journal.beginResync();
    while ((await journal.recordWrite(65536, Buffer.alloc(1000, 2))) !== null) {}
    await assert.rejects(journal.completeResync(plan), { code: 'conflict' });
    assert.equal(journal.resyncRequired, true);
    await journal.close();
  });

  it('lists records read-only, skipping a record still being appended', async () => {
    const dir = freshDir();
    const journal = await WriteJournal.open(dir, {
      diskSize: DISK,
      capacityBytes: 1 << 30,
      segmentBytes: 4096,
    });
    const model = await randomHistory(journal, new SeededRandom(5), 30);
    const listAll = async (from?: number) => {
      const out: JournalRecord[] = [];
      for await (const r of listJournalRecords(dir, from)) out.push(r);
      return out;
    };
    assertSameRecords(await listAll(), model);
    assertSameRecords(await listAll(10), model.slice(9));
    await journal.close();
    const last = (await readdir(dir))
      .filter((n) => n.endsWith('.seg'))
      .sort()
      .at(-1) as string;
    const bytes = await readFile(join(dir, last));
    await writeFile(join(dir, last), bytes.subarray(0, bytes.length - 3));
    assertSameRecords(await listAll(), model.slice(0, -1));
  });

  it('continues a read where the last one stopped, at its file position, and tells listeners when records arrive', async () => {
    const dir = freshDir();
    const journal = await WriteJournal.open(dir, {
      diskSize: DISK,
      capacityBytes: 1 << 30,
      segmentBytes: 1 << 20,
    });
    try {
      let told = 0;
      const stop = journal.onRecords(() => told++);
      const first = journal.status.nextSeq;
      for (let i = 0; i < 5; i++) await journal.recordWrite(i * 4096, Buffer.alloc(4096, i + 1));
      assert.ok(told >= 1, 'a listener hears of journaled records');
      const read = await readAll(journal, first);
      assert.equal(read.length, 5);
      // Bytes already read are not read again: damage there goes unseen by the next read.
      const [segment] = (await readdir(dir)).filter((n) => n.endsWith('.seg'));
      const bytes = await readFile(join(dir, segment as string));
      bytes.fill(0, 0, 64);
      await writeFile(join(dir, segment as string), bytes);
      for (let i = 5; i < 8; i++) await journal.recordWrite(i * 4096, Buffer.alloc(4096, i + 1));
      const next = await readAll(journal, first + 5);
      assert.deepEqual(
        next.map((r) => r.seq),
        [first + 5, first + 6, first + 7],
      );
      assert.ok(next.every((r, i) => r.data?.every((b) => b === i + 6)));
      // A read from the start does read those bytes.
      await assert.rejects(readAll(journal, first), (e: HavenError) => e.details?.kind === 'journal_corrupt');
      stop();
      const before = told;
      await journal.recordWrite(0, Buffer.alloc(4096));
      assert.equal(told, before, 'a removed listener hears nothing');
    } finally {
      await journal.close();
    }
  });

  it('keeps one read handle for a reader that comes back, and closes it on trim and close', async () => {
    const openFiles = async () => (await readdir('/proc/self/fd')).length;
    const before = await openFiles();
    const journal = await WriteJournal.open(freshDir(), {
      diskSize: DISK,
      capacityBytes: 1 << 30,
      segmentBytes: 64 << 10,
    });
    try {
      const opened = await openFiles();
      let next = journal.status.nextSeq;
      for (let round = 0; round < 6; round++) {
        for (let i = 0; i < 4; i++) await journal.recordWrite(i * 4096, Buffer.alloc(4096, round));
        const read = await readAll(journal, next);
        assert.equal(read.length, 4);
        // A flush (a record too) closes the write handles of full segments: left open are the segment being
        // written and the one kept for reading.
        await journal.flush();
        next = journal.status.nextSeq;
        const files = await openFiles();
        assert.ok(files <= opened + 2, `a reader does not leave a handle per read (${files - opened} open)`);
      }
      await journal.trimThrough(next - 1);
      await journal.flush();
      assert.ok((await openFiles()) <= opened + 1, 'the trimmed segment is closed for reading');
    } finally {
      await journal.close();
    }
    assert.equal(await openFiles(), before, 'closing the journal closes every handle');
  });

  it('keeps the sequence across a full trim and reopen', async () => {
    const dir = freshDir();
    const options = { diskSize: DISK, capacityBytes: 1 << 20 };
    let journal = await WriteJournal.open(dir, options);
    for (let i = 0; i < 5; i++) await journal.recordWrite(0, Buffer.alloc(10, i));
    await journal.trimThrough(5);
    await journal.close();
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.endsWith('.seg')),
      [],
    );
    journal = await WriteJournal.open(dir, options);
    assert.equal(await journal.recordWrite(0, Buffer.alloc(10)), 6);
    await assert.rejects(async () => readAll(journal, 3), { code: 'conflict' });
    await assert.rejects(journal.trimThrough(99), { code: 'bad_request' });
    await journal.close();
  });
});
