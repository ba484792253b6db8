import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, mkdtemp, open as openFile, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { allocationMapPath } from '../storage/allocation-map.ts';
import { createSparseImage } from '../storage/sparse-image.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import { parseSize } from '../text/human-units.ts';
import type { JournalRecord } from './journal-record.ts';
import { JournaledBackend } from './journaled-backend.ts';
import type { WriteJournal } from './write-journal.ts';

const root = await mkdtemp(join(tmpdir(), 'haven-backend-'));
after(() => rm(root, { recursive: true, force: true }));
let counter = 0;
const fresh = () => join(root, `t${counter++}`);

const SIZE = 2 << 20;
const CHUNK = 65536;

async function records(journal: WriteJournal, from?: number): Promise<JournalRecord[]> {
  const out: JournalRecord[] = [];
  for await (const r of journal.records(from)) out.push(r);
  return out;
}

/** Applies journal records to a copy of `base`: what a replica rebuilds. */
function replay(base: Buffer, recs: JournalRecord[]): Buffer {
  const disk = Buffer.from(base);
  for (const r of recs) {
    if (r.kind === 'write') r.data?.copy(disk, r.offset);
    else if (r.kind === 'trim' || r.kind === 'zero') disk.fill(0, r.offset, r.offset + r.length);
  }
  return disk;
}

/** Checks BLOCK_STATUS against the bytes: contiguous extents, and every hole reads as zeroes. */
async function checkBlockStatus(backend: JournaledBackend, image: Buffer): Promise<number> {
  const extents = await backend.blockStatus(0, backend.size);
  let pos = 0;
  let holes = 0;
  for (const e of extents) {
    assert.equal(e.offset, pos, 'extents are contiguous');
    assert.ok(e.flags === 0 || e.flags === 3);
    if (e.flags === 3) {
      holes += e.length;
      assert.ok(
        image.subarray(e.offset, e.offset + e.length).every((b) => b === 0),
        `hole at ${e.offset} reads zero`,
      );
    }
    pos += e.length;
  }
  assert.equal(pos, backend.size);
  return holes;
}

function openBackend(imagePath: string, journalDir: string, capacity = 1 << 30) {
  return JournaledBackend.open({
    imagePath,
    journalDir,
    journalCapacityBytes: capacity,
    journalSegmentBytes: Math.min(capacity, 64 << 10),
    chunkSize: CHUNK,
  });
}

describe('JournaledBackend', () => {
  it('keeps image, journal and allocation map in agreement under random concurrent histories', async () => {
    for (let seed = 1; seed <= 5; seed++) {
      const rnd = new SeededRandom(seed * 101);
      const dir = fresh();
      const image = `${dir}.img`;
      await createSparseImage(image, SIZE, CHUNK);
      let backend = await openBackend(image, dir);
      assert.deepEqual(await backend.blockStatus(0, SIZE), [{ offset: 0, length: SIZE, flags: 3 }]);
      const model = Buffer.alloc(SIZE);
      let pending: Promise<void>[] = [];
      for (let i = 0; i < 150; i++) {
        const op = rnd.pick(['write', 'write', 'write', 'trim', 'zero', 'flush'] as const);
        const offset = rnd.int(0, SIZE - 1);
        const length = rnd.int(1, Math.min(SIZE - offset, rnd.pick([512, 5000, 200000])));
        const fua = rnd.next() < 0.1;
        if (op === 'write') {
          const data = rnd.bytes(length);
          data.copy(model, offset);
          pending.push(backend.write(offset, data, { fua }));
        } else if (op === 'trim') {
          model.fill(0, offset, offset + length);
          pending.push(backend.trim(offset, length, { fua }));
        } else if (op === 'zero') {
          model.fill(0, offset, offset + length);
          pending.push(backend.writeZeroes(offset, length, { fua, mayTrim: true }));
        } else {
          pending.push(backend.flush());
        }
        if (rnd.next() < 0.25) {
          await Promise.all(pending);
          pending = [];
          assert.ok((await backend.read(0, SIZE)).equals(model), `image matches model after op ${i}`);
        }
      }
      await Promise.all(pending);
      assert.ok((await backend.read(0, SIZE)).equals(model));
      assert.ok(
        replay(Buffer.alloc(SIZE), await records(backend.journal)).equals(model),
        'journal replays to image',
      );
      await checkBlockStatus(backend, model);
      await backend.close();

      backend = await openBackend(image, dir);
      assert.equal(backend.recovered, false);
      assert.ok((await readFile(image)).equals(model), 'image file on disk matches the model');
      assert.ok(replay(Buffer.alloc(SIZE), await records(backend.journal)).equals(model));
      await checkBlockStatus(backend, model);
      await backend.close();
    }
  });

  it('reports holes for whole trimmed or zeroed chunks and data elsewhere', async () => {
    const dir = fresh();
    const image = `${dir}.img`;
    await createSparseImage(image, SIZE, CHUNK);
    const backend = await openBackend(image, dir);
    await backend.write(0, Buffer.alloc(4 * CHUNK, 7), { fua: false });
    await backend.trim(CHUNK, CHUNK, { fua: false });
    await backend.writeZeroes(2 * CHUNK + 100, CHUNK, { fua: false, mayTrim: false });
    assert.deepEqual(await backend.blockStatus(0, 5 * CHUNK), [
      { offset: 0, length: CHUNK, flags: 0 },
      { offset: CHUNK, length: CHUNK, flags: 3 },
      { offset: 2 * CHUNK, length: 2 * CHUNK, flags: 0 },
      { offset: 4 * CHUNK, length: CHUNK, flags: 3 },
    ]);
    assert.ok((await backend.read(2 * CHUNK + 100, CHUNK)).every((b) => b === 0));
    assert.deepEqual(
      (await records(backend.journal)).map((r) => [r.kind, r.offset, r.length, r.data?.length]),
      [
        ['write', 0, 4 * CHUNK, 4 * CHUNK],
        ['trim', CHUNK, CHUNK, undefined],
        ['zero', 2 * CHUNK + 100, CHUNK, undefined],
      ],
    );
    await backend.close();
  });

  it('scans an existing image without an allocation map once, and persists the result', async () => {
    const dir = fresh();
    const image = `${dir}.img`;
    await assert.rejects(openBackend(image, dir), { code: 'not_found' });
    const file = await openFile(image, 'w');
    await file.truncate(SIZE);
    await file.write(Buffer.alloc(10, 1), 0, 10, 3 * CHUNK + 500);
    await file.write(Buffer.alloc(CHUNK, 0), 0, CHUNK, 5 * CHUNK); // zeroes on disk still read as a hole
    await file.write(Buffer.alloc(1, 9), 0, 1, SIZE - 1);
    await file.close();
    const backend = await openBackend(image, dir);
    assert.deepEqual(await backend.blockStatus(0, SIZE), [
      { offset: 0, length: 3 * CHUNK, flags: 3 },
      { offset: 3 * CHUNK, length: CHUNK, flags: 0 },
      { offset: 4 * CHUNK, length: SIZE - 5 * CHUNK, flags: 3 },
      { offset: SIZE - CHUNK, length: CHUNK, flags: 0 },
    ]);
    await backend.close();
    await access(allocationMapPath(image));
    // A changed map on disk is what the next open uses: proof that it does not rescan a clean image.
    const map = await readFile(allocationMapPath(image));
    assert.equal(map.readUInt32LE(8), 1, 'marked clean on close');
    const reopened = await openBackend(image, dir);
    assert.deepEqual((await reopened.blockStatus(3 * CHUNK, 10)).at(0)?.flags, 0);
    await reopened.close();
  });

  it('refuses out-of-range requests without touching image or journal', async () => {
    const dir = fresh();
    const image = `${dir}.img`;
    await createSparseImage(image, SIZE, CHUNK);
    const backend = await openBackend(image, dir);
    await assert.rejects(backend.write(SIZE - 10, Buffer.alloc(11), { fua: false }), { code: 'bad_request' });
    await assert.rejects(backend.read(SIZE, 1), { code: 'bad_request' });
    await assert.rejects(backend.trim(-1, 10, { fua: false }), { code: 'bad_request' });
    assert.equal(backend.journal.status.nextSeq, 1);
    await backend.close();
  });

  it('keeps serving when the journal is full: right bytes, every write after the overflow dirty', async () => {
    const rnd = new SeededRandom(99);
    const dir = fresh();
    const image = `${dir}.img`;
    await createSparseImage(image, SIZE, CHUNK);
    let backend = await openBackend(image, dir, 48 << 10);
    const model = Buffer.alloc(SIZE);
    const unjournaled: { offset: number; length: number }[] = [];
    for (let i = 0; i < 60; i++) {
      const offset = rnd.int(0, SIZE - 8192);
      const data = rnd.bytes(rnd.int(1, 8192));
      const before = backend.journal.status.nextSeq;
      await backend.write(offset, data, { fua: false });
      data.copy(model, offset);
      if (backend.journal.status.nextSeq === before) unjournaled.push({ offset, length: data.length });
    }
    assert.ok(unjournaled.length > 10);
    assert.equal(backend.journal.status.resyncRequired, true);
    await backend.flush();
    await backend.close();

    backend = await openBackend(image, dir, 48 << 10);
    assert.ok((await backend.read(0, SIZE)).equals(model), 'the image holds every write');
    const dirty = backend.journal.dirtyRegions();
    for (const w of unjournaled) {
      for (const at of [w.offset, w.offset + w.length - 1]) {
        assert.ok(
          dirty.some((r) => r.offset <= at && at < r.offset + r.length),
          `write at ${w.offset} is dirty`,
        );
      }
    }
    // The resync protocol: trim what was shipped, resume journaling, copy the dirty regions, complete.
    const journaled = await records(backend.journal);
    const replica = replay(Buffer.alloc(SIZE), journaled);
    await backend.journal.trimThrough(backend.journal.status.writtenSeq);
    const plan = await backend.beginResync();
    await backend.write(0, Buffer.alloc(100, 5), { fua: false });
    Buffer.alloc(100, 5).copy(model, 0);
    for (const r of plan.regions) (await backend.read(r.offset, r.length)).copy(replica, r.offset);
    await backend.journal.completeResync(plan);
    const resumed = replay(replica, await records(backend.journal, plan.resumeSeq));
    assert.ok(resumed.equals(model), 'journal prefix + resynced regions + resumed journal rebuild the disk');
    assert.equal(backend.journal.status.resyncRequired, false);
    await backend.close();
  });

  it('after a crash, replays a write whose record precedes the last flush but whose image write was cut short', async () => {
    const dir = fresh();
    const image = `${dir}.img`;
    await createSparseImage(image, SIZE, CHUNK);
    const crashed = await openBackend(image, dir);
    await crashed.write(0, Buffer.alloc(4096, 1), { fua: false });
    await crashed.flush();
    // A write that began while the next flush synced the image: its record
    // comes before that flush's record, and the crash came before its image write.
    await crashed.journal.recordWrite(8192, Buffer.alloc(4096, 7));
    await crashed.journal.flush();
    const backend = await openBackend(image, dir);
    try {
      assert.equal(backend.recovered, true, 'the unclean shutdown was noticed');
      const disk = await backend.read(0, SIZE);
      assert.ok(
        replay(Buffer.alloc(SIZE), await records(backend.journal)).equals(disk),
        'after recovery the image is the journal replayed',
      );
    } finally {
      await backend.close();
    }
  });

  it('loses no acknowledged write when the writer is killed with SIGKILL', async () => {
    for (const seed of [1, 2]) {
      const dir = fresh();
      const image = `${dir}.img`;
      await createSparseImage(image, SIZE, CHUNK);
      const child = spawn(
        process.execPath,
        [
          fileURLToPath(new URL('../testing/crash-writer.fixture.ts', import.meta.url)),
          image,
          dir,
          String(seed),
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      // Kill at a random moment once the child is well into its write storm.
      const killAfterAcks = 20 + seed * 37;
      await new Promise<void>((resolve) => {
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          if (out.split('\nack ').length > killAfterAcks) resolve();
        });
      });
      await new Promise((r) => setTimeout(r, seed * 13));
      child.kill('SIGKILL');
      await exited;
      const acks = out
        .split('\n')
        .filter((l) => l.startsWith('ack '))
        .map((l) => l.split(' '));
      assert.ok(acks.length > 20, `the child acknowledged ${acks.length} writes before it was killed`);

      const backend = await openBackend(image, dir);
      assert.equal(backend.recovered, true, 'the unclean shutdown was noticed');
      const recs = await records(backend.journal);
      const bySeq = new Map(recs.map((r) => [r.seq, r]));
      for (const [, seq, offset, length, crc] of acks) {
        const r = bySeq.get(Number(seq));
        assert.ok(r, `acknowledged record ${seq} survived`);
        assert.equal(r.offset, Number(offset));
        assert.equal(r.length, Number(length));
        if (crc === 'zero') assert.equal(r.kind, 'zero');
        else assert.equal(crc32(r.data as Buffer), Number(crc));
      }
      const disk = await backend.read(0, SIZE);
      assert.ok(
        replay(Buffer.alloc(SIZE), recs).equals(disk),
        'after recovery the image is the journal replayed',
      );
      await checkBlockStatus(backend, disk);
      await backend.close();
    }
  });
});

describe('sparse images', () => {
  it('parses sizes', () => {
    assert.equal(parseSize('10G'), 10 * 2 ** 30);
    assert.equal(parseSize('512M'), 512 * 2 ** 20);
    assert.equal(parseSize('1T'), 2 ** 40);
    assert.equal(parseSize('4096'), 4096);
    assert.equal(parseSize('64KiB'), 65536);
    assert.equal(parseSize('1.5G'), 1.5 * 2 ** 30);
    for (const bad of ['', '0', '-1G', '10X', 'G', '1.1', '99999999P']) {
      assert.throws(() => parseSize(bad), { code: 'validation_failed' }, bad);
    }
  });

  it('creates a sparse image that refuses to be overwritten', async () => {
    const image = `${fresh()}.img`;
    await createSparseImage(image, 1 << 30);
    const file = await stat(image);
    assert.equal(file.size, 1 << 30);
    assert.ok(file.blocks * 512 < 1 << 20, 'no blocks allocated');
    await assert.rejects(createSparseImage(image, 1 << 20), { code: 'conflict' });
    await assert.rejects(createSparseImage(`${image}2`, 1000), { code: 'validation_failed' });
  });
});
