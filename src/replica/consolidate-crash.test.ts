/**
 * kill -9 in the middle of a consolidation (complete failover: the base moves
 * back to the machine's image; commit after failback: a view is merged into
 * the base): the reopened store finishes or redoes it, and repeating the call
 * gives the expected disk.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { JournalRecord } from '../disk/index.ts';
import { spawnTs } from '../testing/child-process.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import { ReplicaStore } from './replica-store.ts';

const FIXTURE = new URL('../testing/consolidate-crash.fixture.ts', import.meta.url).pathname;
const SIZE = 8 << 20;
const KEY = 'm/d';

/** A replica with a full initial copy and many small records: a merge of them takes many steps. */
async function prepare(dir: string, seed: number): Promise<{ model: Buffer; lastSeq: number }> {
  const rnd = new SeededRandom(seed);
  const store = await ReplicaStore.open(dir, { mergeStepBytes: 64 << 10 });
  const model = rnd.bytes(SIZE);
  await store.ensureDisk(KEY, SIZE);
  await store.beginSync(KEY, { id: 'initial', kind: 'initial', fromSeq: 1, regions: null });
  await store.writeSyncData(KEY, 'initial', 0, model, SIZE);
  await store.completeSync(KEY, 'initial', 1);
  const records: JournalRecord[] = [];
  for (let seq = 1; seq <= 300; seq++) {
    const timeMs = Date.now() - 10_000 + seq;
    if (seq % 10 === 0) {
      records.push({ seq, timeMs, kind: 'flush', offset: 0, length: 0 });
      continue;
    }
    const length = rnd.int(1, 8) * 4096;
    const offset = rnd.int(0, (SIZE - length) / 4096) * 4096;
    const data = rnd.bytes(length);
    data.copy(model, offset);
    records.push({ seq, timeMs, kind: 'write', offset, length, data });
  }
  await store.append(KEY, records);
  await store.close();
  return { model, lastSeq: 300 };
}

async function crashAndRetry(dir: string, mode: 'restore' | 'view', target: string, delayMs: number) {
  const child = spawnTs(FIXTURE, [dir, mode, target]);
  await new Promise<void>((resolve, reject) => {
    const check = () => {
      if (child.output().includes('start')) resolve();
    };
    child.process.stdout?.on('data', check);
    void child.exited.then(() =>
      child.output().includes('start') ? resolve() : reject(new Error(child.output())),
    );
  });
  await new Promise((r) => setTimeout(r, delayMs));
  child.process.kill('SIGKILL');
  await child.exited;
  return child.output().includes('done');
}

test('kill -9 during consolidate: the base reaches the image on retry', async () => {
  let interrupted = 0;
  for (const [round, delayMs] of [10, 40, 120].entries()) {
    const dir = await mkdtemp(join(tmpdir(), 'replica-consolidate-'));
    try {
      const { model } = await prepare(join(dir, 'store'), round + 1);
      const image = join(dir, 'machine.img');
      if (!(await crashAndRetry(join(dir, 'store'), 'restore', image, delayMs))) interrupted++;
      const store = await ReplicaStore.open(join(dir, 'store'));
      await store.restoreImage(KEY, image);
      await store.restoreImage(KEY, image);
      assert.equal(store.listDisks().length, 0, 'the replica is gone');
      await store.close();
      assert.ok((await readFile(image)).equals(model), `round ${round}: image = every record applied`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  assert.ok(interrupted > 0, 'at least one kill landed inside the consolidation');
});

test('kill -9 during consolidateView: the view becomes the replica on retry', async () => {
  let interrupted = 0;
  for (const [round, delayMs] of [10, 40, 120].entries()) {
    const dir = await mkdtemp(join(tmpdir(), 'replica-consolidate-view-'));
    try {
      const storeDir = join(dir, 'store');
      await prepare(storeDir, round + 11);
      const rnd = new SeededRandom(round);
      let store = await ReplicaStore.open(storeDir);
      const point = store.listPoints(KEY).at(-3);
      assert.ok(point !== undefined);
      const view = await store.openView(KEY, point.seq, { writable: true, viewId: 'fo' });
      for (let i = 0; i < 50; i++) {
        const length = rnd.int(1, 16) * 4096;
        const offset = rnd.int(0, (SIZE - length) / 4096) * 4096;
        await view.write(offset, rnd.bytes(length), { fua: false });
      }
      await view.trim(SIZE / 2, 1 << 20, { fua: false });
      await view.flush();
      const expected = await view.read(0, SIZE);
      await view.close();
      await store.close();
      if (!(await crashAndRetry(storeDir, 'view', 'fo', delayMs))) interrupted++;
      store = await ReplicaStore.open(storeDir);
      await store.consolidateView(KEY, 'fo', 0);
      await store.consolidateView(KEY, 'fo', 0);
      assert.equal(store.diskStatus(KEY).durableSeq, 0);
      assert.equal(store.diskStatus(KEY).openViews, 0);
      assert.ok((await store.read(KEY, 0, SIZE)).equals(expected), `round ${round}: replica = view`);
      // It follows a fresh journal from sequence 1.
      await store.append(KEY, [{ seq: 1, timeMs: Date.now(), kind: 'flush', offset: 0, length: 0 }]);
      assert.ok(store.listPoints(KEY).some((p) => p.seq === 1));
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  assert.ok(interrupted > 0, 'at least one kill landed inside the consolidation');
});
