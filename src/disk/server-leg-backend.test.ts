/**
 * A server's md leg on a journaled staging image: flushes become recovery
 * points (flush records) only while md holds the leg in sync, the first one
 * is cut when it becomes so, and none ever precedes that superblock.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readJournal } from '../testing/disk-service.fixture.ts';
import { buildMdSuperblock } from '../testing/md-superblock.fixture.ts';
import { openSource } from '../testing/replication-test-fixture.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import { MD_FEATURE_RECOVERY_OFFSET, mdSuperblockOffset, parseMdSuperblock } from './md-superblock.ts';
import { ServerLegBackend } from './server-leg-backend.ts';

const SIZE = 1 << 20;
const SB_AT = mdSuperblockOffset(SIZE) as number;
const WRITE = { fua: false };

const superblocks = {
  resyncing: buildMdSuperblock({ resyncOffset: 0n }),
  checkpoint: buildMdSuperblock({ resyncOffset: 64n }),
  clean: buildMdSuperblock({}),
  active: buildMdSuperblock({ resyncOffset: 0n }),
  recovering: buildMdSuperblock({
    featureMap: MD_FEATURE_RECOVERY_OFFSET,
    recoveryOffset: 8n,
    resyncOffset: 0n,
  }),
};

describe('server leg backend', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'haven-leg-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test('no point while resyncing; the first point is cut with the in-sync superblock; flushes are points after', async () => {
    const dir = join(root, 'basic');
    await mkdir(dir);
    const leg = await ServerLegBackend.open(await openSource(dir, SIZE));
    leg.connectionOpened();
    try {
      await leg.write(0, Buffer.alloc(4096, 1), WRITE);
      await leg.write(SB_AT, superblocks.resyncing, WRITE);
      await leg.flush();
      await leg.write(4096, Buffer.alloc(4096, 2), WRITE);
      await leg.flush();
      let records = await readJournal(join(dir, 'journal'));
      assert.equal(records.filter((r) => r.kind === 'flush').length, 0, 'no point while resyncing');
      assert.equal(leg.view.md, 'resyncing');
      await leg.write(SB_AT, superblocks.clean, WRITE);
      records = await readJournal(join(dir, 'journal'));
      assert.deepEqual(
        records.slice(-2).map((r) => r.kind),
        ['write', 'flush'],
        'the in-sync superblock, then the first point',
      );
      await leg.write(0, Buffer.alloc(4096, 3), WRITE);
      await leg.flush();
      records = await readJournal(join(dir, 'journal'));
      assert.equal(records.filter((r) => r.kind === 'flush').length, 2);
      assert.deepEqual(leg.view, { md: 'in-sync', syncedBytes: null, pointsAllowed: true });
      leg.connectionClosed();
      assert.equal(leg.connected, false);
      assert.equal(leg.view.pointsAllowed, false, 'a lost connection stops points');
    } finally {
      await leg.close();
    }
    const reopened = await ServerLegBackend.open(await openSource(dir, SIZE));
    try {
      assert.deepEqual(
        reopened.view,
        { md: 'in-sync', syncedBytes: null, pointsAllowed: false },
        'md last said in sync; no points until it says so again',
      );
    } finally {
      await reopened.close();
    }
  });

  test("a FUA write (a filesystem's commit block) is a point after it; the agent's word makes a busy leg in sync", async () => {
    const dir = join(root, 'fua');
    await mkdir(dir);
    const leg = await ServerLegBackend.open(await openSource(dir, SIZE));
    leg.connectionOpened();
    try {
      await leg.write(SB_AT, buildMdSuperblock({ resyncOffset: 0n, events: 7n }), WRITE);
      await leg.write(0, Buffer.alloc(4096, 1), { fua: true });
      let records = await readJournal(join(dir, 'journal'));
      assert.equal(records.filter((r) => r.kind === 'flush').length, 0, 'no point while md has not vouched');
      await leg.confirmInSync(6n);
      assert.equal(leg.view.pointsAllowed, false, 'an older look proves nothing');
      await leg.confirmInSync(7n);
      assert.equal(leg.view.pointsAllowed, true);
      records = await readJournal(join(dir, 'journal'));
      assert.equal(records.at(-1)?.kind, 'flush', 'the first point, on the agent’s word');
      await leg.flush();
      await leg.write(8192, Buffer.alloc(4096, 2), { fua: true });
      records = await readJournal(join(dir, 'journal'));
      assert.deepEqual(
        records.slice(-3).map((r) => r.kind),
        ['flush', 'write', 'flush'],
        'the commit block is inside the newest point',
      );
    } finally {
      await leg.close();
    }
  });

  for (const seed of [1, 2, 3, 4]) {
    test(`model: a flush record only while the last vouching superblock stands (seed ${seed})`, async () => {
      const dir = join(root, `model-${seed}`);
      await mkdir(dir);
      const leg = await ServerLegBackend.open(await openSource(dir, SIZE));
      leg.connectionOpened();
      const rnd = new SeededRandom(seed);
      let vouched = false;
      let rebuilding = false;
      let expectedFlushes = 0;
      try {
        for (let i = 0; i < 80; i++) {
          const op = rnd.pick(['write', 'write', 'flush', 'flush', 'sb', 'sb', 'disconnect'] as const);
          if (op === 'write') {
            await leg.write(rnd.int(0, 200) * 4096, rnd.bytes(4096), WRITE);
          } else if (op === 'flush') {
            // Concurrent with a write: decided when the record would be appended.
            await Promise.all([leg.flush(), leg.write(rnd.int(0, 200) * 4096, rnd.bytes(512), WRITE)]);
            if (vouched) expectedFlushes++;
          } else if (op === 'disconnect') {
            leg.connectionClosed();
            leg.connectionOpened();
            vouched = false;
          } else {
            const kind = rnd.pick(['checkpoint', 'clean', 'active', 'recovering'] as const);
            await leg.write(SB_AT, superblocks[kind], WRITE);
            const now: boolean = kind === 'clean' || (kind === 'active' && (vouched || rebuilding));
            if (now && !vouched) expectedFlushes++;
            vouched = now;
            rebuilding = kind === 'recovering';
          }
          assert.equal(leg.view.pointsAllowed, vouched, `step ${i} (${op})`);
        }
        const records = await readJournal(join(dir, 'journal'));
        assert.equal(records.filter((r) => r.kind === 'flush').length, expectedFlushes);
        // In journal order: every flush record follows a superblock record that vouched for the leg.
        let lastSb: string | null = null;
        for (const r of records) {
          if (r.kind === 'write' && r.offset === SB_AT && r.data) {
            const sb = parseMdSuperblock(r.data);
            lastSb =
              sb === null
                ? null
                : sb.resyncOffset === 0n && sb.featureMap === 0
                  ? lastSb === 'recovering' || lastSb === 'in-sync'
                    ? 'in-sync'
                    : 'active'
                  : sb.featureMap !== 0
                    ? 'recovering'
                    : sb.resyncOffset === 64n
                      ? 'checkpoint'
                      : 'in-sync';
          }
          if (r.kind === 'flush')
            assert.equal(lastSb, 'in-sync', `flush record ${r.seq} follows no in-sync superblock`);
        }
      } finally {
        await leg.close();
      }
    });
  }
});
