/**
 * `haven disk serve` killed with SIGKILL during a write storm: nothing
 * acknowledged before an acknowledged flush is lost, and on restart journal
 * and image agree. Also covers `haven disk create` and `haven disk journal`.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { crc32 } from 'node:zlib';
import { NbdClient } from '../nbd/index.ts';
import { runHaven, spawnTs } from '../testing/child-process.ts';
import { describeRecord, readJournal, replay } from '../testing/disk-service.fixture.ts';
import { SeededRandom } from '../testing/seeded-random.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 16 * MiB;

interface Op {
  /** Issue order: one connection, so also the order the service receives them. */
  index: number;
  kind: 'write' | 'zero' | 'trim';
  offset: number;
  length: number;
  data?: Buffer;
}

function describeOp(op: Op): string {
  return `${op.kind} ${op.offset} ${op.length}${op.data === undefined ? '' : ` crc=${crc32(op.data)}`}`;
}

function serve(image: string, journal: string, socket: string) {
  return spawnTs('src/cli/main.ts', [
    'disk',
    'serve',
    '--image',
    image,
    '--journal',
    journal,
    '--socket',
    socket,
  ]);
}

describe('haven disk serve under SIGKILL', { concurrency: 4 }, () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'haven-disk-crash-'));
  });
  after(() => rm(root, { recursive: true, force: true }));

  test('haven disk create makes a sparse image and refuses to overwrite it', async () => {
    const image = join(root, 'created.img');
    const made = await runHaven(['disk', 'create', '--size', '10G', image]);
    assert.equal(made.code, 0, made.stderr);
    assert.deepEqual(JSON.parse(made.stdout), { path: image, sizeBytes: 10 * 2 ** 30 });
    const created = await stat(image);
    assert.equal(created.size, 10 * 2 ** 30);
    assert.ok(created.blocks * 512 < MiB, 'the image is sparse');
    const again = await runHaven(['disk', 'create', '--size', '1M', image]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists/);
  });

  for (const seed of [1, 2, 3]) {
    test(`seed ${seed}: every write acknowledged before an acknowledged flush survives; journal replays to the image`, async () => {
      const dir = join(root, `seed${seed}`);
      const image = `${dir}.img`;
      const journal = `${dir}.journal`;
      const socket = `${dir}.sock`;
      const rnd = new SeededRandom(seed);
      // A starting image with data in its first half (no allocation map: the service scans it).
      const base = Buffer.concat([rnd.bytes(SIZE / 2), Buffer.alloc(SIZE / 2)]);
      await writeFile(image, base);

      let child = serve(image, journal, socket);
      const ready = await child.firstJson<{ uri: string; recovered: boolean }>();
      assert.equal(ready.uri, `nbd+unix:///disk?socket=${socket}`);
      const client = await NbdClient.connect({ path: socket }, { exportName: 'disk' });

      const ops: Op[] = [];
      /** Ops in acknowledgement order. */
      const acked: Op[] = [];
      /** How many of `acked` an acknowledged flush covers. */
      let guaranteed = 0;
      const killAfter = rnd.int(150, 400);
      let killed = false;
      const kill = () => {
        if (!killed) {
          killed = true;
          child.process.kill('SIGKILL');
        }
      };
      const worker = async () => {
        while (!killed) {
          const roll = rnd.next();
          try {
            if (roll < 0.1) {
              const covers = acked.length;
              await client.flush();
              guaranteed = Math.max(guaranteed, covers);
              continue;
            }
            const length = rnd.int(1, 128) * 512;
            const offset = rnd.int(0, (SIZE - length) / 512) * 512;
            const op: Op = {
              index: ops.length,
              kind: roll < 0.17 ? 'zero' : roll < 0.2 ? 'trim' : 'write',
              offset,
              length,
            };
            if (op.kind === 'write') op.data = rnd.bytes(length);
            ops.push(op);
            if (op.kind === 'write') await client.write(offset, op.data as Buffer, { fua: roll > 0.97 });
            else if (op.kind === 'zero') await client.writeZeroes(offset, length);
            else await client.trim(offset, length);
            acked.push(op);
            if (acked.length >= killAfter) kill();
          } catch {
            assert.ok(killed, 'requests fail only once the service is killed');
            return;
          }
        }
      };
      await Promise.all([worker(), worker(), worker(), worker(), worker(), worker()]);
      await child.exited;
      client.destroy();
      assert.ok(guaranteed > 20, `flushes were acknowledged (${guaranteed} writes covered)`);

      child = serve(image, journal, socket);
      const restarted = await child.firstJson<{ recovered: boolean }>();
      assert.equal(restarted.recovered, true, 'the restart noticed the unclean shutdown');
      const records = (await readJournal(journal)).filter((r) => r.kind !== 'flush' && r.kind !== 'marker');
      // The journal holds a prefix of the ops, in issue order, with their data.
      const journaled = records.map(describeRecord);
      assert.deepEqual(journaled, ops.slice(0, records.length).map(describeOp));
      const mustHave = Math.max(0, ...acked.slice(0, guaranteed).map((op) => op.index + 1));
      assert.ok(
        records.length >= mustHave,
        `the journal holds ${records.length} ops; ${mustHave} were needed for the flushed writes`,
      );

      // The image the restarted service serves is the starting image with the journal replayed.
      const expected = replay(base, records);
      const reader = await NbdClient.connect({ path: socket }, { exportName: 'disk' });
      assert.ok(
        (await reader.read(0, SIZE)).equals(expected),
        'served image = journal replayed onto the start',
      );
      await reader.disconnect();
      // Every flushed op that no later op overlaps reads back as written.
      for (const op of acked.slice(0, guaranteed)) {
        const overwritten = ops.some(
          (o) => o.index > op.index && o.offset < op.offset + op.length && op.offset < o.offset + o.length,
        );
        if (overwritten) continue;
        const want = op.data ?? Buffer.alloc(op.length);
        assert.ok(
          expected.subarray(op.offset, op.offset + op.length).equals(want),
          `op ${op.index} is in the image`,
        );
      }

      // `haven disk journal` lists the same records while the service runs (once: the CLI is slow to start).
      if (seed === 1) {
        const listed = await runHaven(['disk', 'journal', '--journal', journal, '--json']);
        assert.equal(listed.code, 0, listed.stderr);
        const rows = (
          JSON.parse(listed.stdout) as Array<{
            kind: string;
            offset: number;
            length: number;
            crc32: number | null;
          }>
        )
          .filter((r) => r.kind !== 'flush' && r.kind !== 'marker')
          .map((r) => `${r.kind} ${r.offset} ${r.length}${r.crc32 === null ? '' : ` crc=${r.crc32}`}`);
        assert.deepEqual(rows, journaled);
      }

      child.process.kill('SIGTERM');
      assert.equal(await child.exited, 0, child.output());
      assert.ok((await readFile(image)).equals(expected), 'the image file after a clean stop');
    });
  }
});
