/**
 * Point-in-time views served over NBD and read by peers nobody here wrote
 * (Debian: libnbd-bin for nbdcopy, qemu-utils for qemu-img), and the cost of
 * opening a view: it follows the retained records, not the disk size.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { NbdServer } from '../nbd/index.ts';
import { nbdUnixUri, runOk, scratchDir } from '../testing/nbd-test-fixture.ts';
import { modelAt, randomHistory } from '../testing/replica-test-model.ts';
import { ReplicaStore } from './replica-store.ts';

const MiB = 1 << 20;

test('nbdcopy and qemu-img compare read a view served by NbdServer as the model disk', async () => {
  const dir = await scratchDir('replica-nbd');
  const size = 8 * MiB;
  const store = await ReplicaStore.open(join(dir.path, 'store'), { segmentBytes: 512 << 10, now: () => 0 });
  const server = new NbdServer();
  const socket = join(dir.path, 'nbd.sock');
  await server.listen({ path: socket });
  try {
    const history = randomHistory(77, { size, count: 400, firstSeq: 0, startTimeMs: 0 });
    await store.ensureDisk('vm/d0', size);
    await store.append('vm/d0', history);
    const points = store.listPoints('vm/d0');
    const point = points[Math.floor(points.length / 2)];
    assert.ok(point !== undefined);
    const view = await store.openView('vm/d0', point.id);
    server.addExport('point', { backend: view });
    const model = join(dir.path, 'model.raw');
    await writeFile(model, modelAt(size, history, point.seq));
    const copy = join(dir.path, 'copy.raw');
    await runOk('nbdcopy', [nbdUnixUri(socket, 'point'), copy]);
    await runOk('cmp', [copy, model]);
    await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', model, nbdUnixUri(socket, 'point')]);
    // The model at another point differs: the comparison can fail.
    await writeFile(model, modelAt(size, history, (points.at(-1) as { seq: number }).seq));
    await assert.rejects(
      runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', model, nbdUnixUri(socket, 'point')]),
    );
    await server.removeExport('point');
    await view.close();
  } finally {
    await server.close();
    await store.close();
    await dir.remove();
  }
});

test('opening a view costs the same on a 1 GiB and a 16 GiB disk', async () => {
  const dir = await scratchDir('replica-open');
  const store = await ReplicaStore.open(join(dir.path, 'store'), { now: () => 0 });
  try {
    const medians: Record<string, number> = {};
    for (const gib of [1, 16]) {
      const size = gib * 1024 * MiB;
      const key = `vm/${gib}g`;
      await store.ensureDisk(key, size);
      await store.append(
        key,
        randomHistory(gib, { size, count: 500, firstSeq: 0, startTimeMs: 0, maxWrite: 8192 }),
      );
      const seq = (store.listPoints(key).at(-1) as { seq: number }).seq;
      const times: number[] = [];
      for (let i = 0; i < 21; i++) {
        const t0 = process.hrtime.bigint();
        const view = await store.openView(key, seq);
        times.push(Number(process.hrtime.bigint() - t0) / 1e6);
        await view.close();
      }
      times.sort((a, b) => a - b);
      medians[gib] = times[10] as number;
    }
    console.log(`view open median: 1 GiB ${medians[1]?.toFixed(2)} ms, 16 GiB ${medians[16]?.toFixed(2)} ms`);
    assert.ok((medians[16] as number) < 50, 'milliseconds, not a scan of the disk');
    assert.ok((medians[16] as number) < (medians[1] as number) * 3 + 2, 'does not grow with the disk size');
  } finally {
    await store.close();
    await dir.remove();
  }
});
