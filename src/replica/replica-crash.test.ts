/**
 * kill -9 of a process appending to and merging a replica store, at random
 * moments: the reopened store holds every acknowledged record, its catalog is
 * consistent and every view matches the model disk.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { spawnTs } from '../testing/child-process.ts';
import { CRASH_DISK, CRASH_RETENTION, crashHistory, modelAt } from '../testing/replica-test-model.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import { ReplicaStore } from './replica-store.ts';

const FIXTURE = new URL('../testing/crash-appender.fixture.ts', import.meta.url).pathname;

function waitFor(child: ReturnType<typeof spawnTs>, pattern: RegExp, timeoutMs = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no ${pattern} in ${timeoutMs} ms:\n${child.output()}`)),
      timeoutMs,
    );
    const check = () => {
      if (pattern.test(child.output())) {
        clearTimeout(timer);
        child.process.stdout?.off('data', check);
        resolve();
      }
    };
    child.process.stdout?.on('data', check);
    void child.exited.then(() => {
      check();
      reject(new Error(`child exited before ${pattern}:\n${child.output()}`));
    });
    check();
  });
}

test('kill -9 while appending and merging never loses an acknowledged record', async () => {
  const seed = 4242;
  const rnd = new SeededRandom(seed);
  const history = crashHistory(seed);
  const dir = await mkdtemp(join(tmpdir(), 'replica-crash-'));
  let merges = 0;
  try {
    for (let round = 0; round < 5; round++) {
      const child = spawnTs(FIXTURE, [dir, String(seed)]);
      await waitFor(child, /ready -?\d+/);
      // An earlier round may have been killed after its last append: nothing is left to interrupt.
      if (Number(/ready (-?\d+)/.exec(child.output())?.[1]) === history.at(-1)?.seq) {
        await child.exited;
        break;
      }
      await waitFor(child, /\nack \d+/);
      await new Promise((r) => setTimeout(r, rnd.int(20, 400)));
      child.process.kill('SIGKILL');
      await child.exited;
      const out = child.output();
      const acks = [...out.matchAll(/^ack (\d+)$/gm)].map((m) => Number(m[1]));
      merges += [...out.matchAll(/^merged (\d+)$/gm)].length;
      const acked = acks.at(-1) ?? -1;

      const store = await ReplicaStore.open(dir, { retention: CRASH_RETENTION });
      try {
        const durable = await store.durableSequence(CRASH_DISK.key);
        assert.ok(durable >= acked, `round ${round}: durable ${durable} >= acknowledged ${acked}`);
        const now = history[durable - 1]?.timeMs ?? 0;
        const points = store.listPoints(CRASH_DISK.key, now);
        const status = store.diskStatus(CRASH_DISK.key);
        assert.ok(points.length > 0, `round ${round}: has points`);
        assert.ok(points.every((p) => p.seq >= status.baseSeq && p.seq <= durable));
        const seqs = new Set([
          durable,
          (points.at(-1) as { seq: number }).seq,
          rnd.pick(points).seq,
          rnd.pick(points).seq,
        ]);
        for (const seq of seqs) {
          const view = await store.openView(CRASH_DISK.key, seq);
          const bytes = await view.read(0, view.size);
          await view.close();
          assert.ok(bytes.equals(modelAt(CRASH_DISK.size, history, seq)), `round ${round}: view at ${seq}`);
        }
      } finally {
        await store.close();
      }
    }
    assert.ok(merges > 0, 'merges ran before the kills');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
