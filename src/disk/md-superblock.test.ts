/**
 * The md superblock parser against superblocks built as md_p.h lays them out,
 * and the leg tracker against md's own sequences (create → resync → clean,
 * active/clean flips, fail → re-add → rebuild, lost connections).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildMdSuperblock } from '../testing/md-superblock.fixture.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import {
  MAX_SECTOR,
  MD_FEATURE_RECOVERY_OFFSET,
  MD_SB_READ_BYTES,
  MdLegTracker,
  mdMemberState,
  mdSuperblockOffset,
  parseMdSuperblock,
} from './md-superblock.ts';

const padded = (sb: Buffer) => Buffer.concat([sb, Buffer.alloc(MD_SB_READ_BYTES - sb.length)]);

describe('md superblock 1.0', () => {
  test('sits at ((sectors - 16) & ~7) sectors, none on a device too small', () => {
    assert.equal(mdSuperblockOffset(64 << 20), ((64 << 11) - 16) * 512);
    assert.equal(mdSuperblockOffset(1000 * 512 + 100), (1000 - 16 - ((1000 - 16) % 8)) * 512);
    assert.equal(mdSuperblockOffset(8 * 512), null);
  });

  test('parses the fields md writes; wrong magic, version, checksum or size is no superblock', () => {
    const sb = buildMdSuperblock({
      featureMap: MD_FEATURE_RECOVERY_OFFSET,
      recoveryOffset: 2048n,
      resyncOffset: MAX_SECTOR,
      events: 42n,
      devNumber: 1,
      roles: [0, 1],
      sizeSectors: 131040n,
    });
    const parsed = parseMdSuperblock(padded(sb));
    assert.deepEqual(parsed, {
      arrayUuid: 'ab'.repeat(16),
      featureMap: 2,
      raidDisks: 2,
      devNumber: 1,
      role: 1,
      events: 42n,
      resyncOffset: MAX_SECTOR,
      recoveryOffset: 2048n,
      sizeSectors: 131040n,
    });
    assert.deepEqual(mdMemberState(parsed!), { kind: 'recovering', syncedSectors: 2048n });
    const torn = Buffer.from(sb);
    torn.writeBigUInt64LE(7n, 208);
    assert.equal(parseMdSuperblock(torn), null, 'checksum mismatch');
    const other = Buffer.from(sb);
    other.writeUInt32LE(0xa92b4efd, 0);
    assert.equal(parseMdSuperblock(other), null, 'magic');
    assert.equal(parseMdSuperblock(Buffer.alloc(MD_SB_READ_BYTES)), null, 'zeroes');
    assert.equal(parseMdSuperblock(sb.subarray(0, 200)), null, 'short');
  });

  test('a member is a data slot only with a role below raid_disks', () => {
    for (const [roles, kind] of [
      [[0, 0xffff], 'not-a-member'],
      [[0, 0xfffe], 'not-a-member'],
      [[0, 2], 'not-a-member'],
      [[0, 1], 'clean-in-sync'],
    ] as const) {
      const parsed = parseMdSuperblock(buildMdSuperblock({ roles: [...roles] }));
      assert.equal(mdMemberState(parsed!).kind, kind, `roles ${roles}`);
    }
  });
});

type Step =
  | 'create'
  | 'checkpoint'
  | 'clean'
  | 'active'
  | 'readd'
  | 'rebuilt'
  | 'spare'
  | 'disconnect'
  | 'newArray';

describe('md leg tracker', () => {
  const sbOf = (step: Step, uuid: number) =>
    parseMdSuperblock(
      buildMdSuperblock({
        arrayUuid: Buffer.alloc(16, uuid),
        ...(step === 'create' || step === 'active' || step === 'rebuilt' ? { resyncOffset: 0n } : {}),
        ...(step === 'checkpoint' ? { resyncOffset: 4096n } : {}),
        ...(step === 'readd'
          ? { featureMap: MD_FEATURE_RECOVERY_OFFSET, recoveryOffset: 512n, resyncOffset: 0n }
          : {}),
        ...(step === 'spare' ? { roles: [0, 0xffff] } : {}),
      }),
    );

  test('md sequences: create, resync, clean; active flips; fail, re-add, rebuild', () => {
    const t = new MdLegTracker();
    const at = (step: Step) => (step === 'disconnect' ? t.disconnected() : t.observe(sbOf(step, 1)));
    assert.equal(at('create').pointsAllowed, false);
    assert.equal(t.view.md, 'resyncing');
    assert.deepEqual(at('checkpoint'), { md: 'resyncing', syncedBytes: 4096 * 512, pointsAllowed: false });
    assert.equal(at('active').pointsAllowed, false, 'active during a resync is no proof');
    assert.equal(at('clean').pointsAllowed, true);
    assert.equal(at('active').pointsAllowed, true, 'active after clean: still in sync');
    assert.equal(at('clean').pointsAllowed, true);
    assert.equal(at('disconnect').pointsAllowed, false);
    assert.deepEqual(at('readd'), { md: 'recovering', syncedBytes: 512 * 512, pointsAllowed: false });
    assert.deepEqual(at('rebuilt'), { md: 'in-sync', syncedBytes: null, pointsAllowed: true });
    assert.equal(at('disconnect').pointsAllowed, false);
    assert.deepEqual(at('active'), { md: 'in-sync', syncedBytes: null, pointsAllowed: false });
    assert.equal(at('clean').pointsAllowed, true);
    assert.equal(at('spare').pointsAllowed, false);
    assert.equal(t.observe(null).md, 'unknown');
  });

  test("the agent's word: a whole, idle array at an event no earlier than the leg's last active superblock", () => {
    const t = new MdLegTracker();
    const sb = (step: 'create' | 'active' | 'readd', events: bigint) =>
      parseMdSuperblock(
        buildMdSuperblock({
          arrayUuid: Buffer.alloc(16, 2),
          events,
          resyncOffset: 0n,
          ...(step === 'readd' ? { featureMap: MD_FEATURE_RECOVERY_OFFSET, recoveryOffset: 512n } : {}),
        }),
      );
    t.observe(sb('create', 5n));
    t.observe(sb('active', 9n));
    assert.equal(t.confirm(8n).pointsAllowed, false, 'a look older than the superblock proves nothing');
    assert.deepEqual(t.confirm(9n), { md: 'in-sync', syncedBytes: null, pointsAllowed: true });
    assert.equal(t.disconnected().pointsAllowed, false);
    t.observe(sb('readd', 12n));
    assert.equal(t.confirm(20n).md, 'recovering', 'a rebuild the leg was told of is not overridden');
    assert.equal(t.view.pointsAllowed, false);
    assert.equal(
      new MdLegTracker().confirm(1n).pointsAllowed,
      false,
      'no superblock seen: nothing to confirm',
    );
  });

  test('model: points are allowed only after a clean in-sync or rebuilt superblock of the same array, with no loss since', () => {
    // 'create' within an array is an active superblock: a new array (new uuid) is what creates one.
    const steps: Step[] = ['checkpoint', 'clean', 'active', 'readd', 'spare', 'disconnect', 'newArray'];
    for (let seed = 1; seed <= 200; seed++) {
      const rnd = new SeededRandom(seed);
      const t = new MdLegTracker();
      let uuid = 1;
      // The model: the last vouching superblock (clean in-sync, or rebuilt right after a rebuild) and nothing since but active ones.
      let vouched = false;
      let rebuilding = false;
      for (let i = 0; i < 60; i++) {
        const step = rnd.pick(steps);
        if (step === 'disconnect') {
          t.disconnected();
          vouched = false;
        } else if (step === 'newArray') {
          uuid++;
          t.observe(sbOf('create', uuid));
          vouched = false;
          rebuilding = false;
        } else {
          const active: boolean = step === 'active' && rebuilding;
          t.observe(sbOf(active ? 'rebuilt' : step, uuid));
          vouched = step === 'clean' || active || (step === 'active' && vouched);
          rebuilding = step === 'readd';
        }
        assert.equal(t.view.pointsAllowed, vouched, `seed ${seed} step ${i} (${step})`);
      }
    }
  });
});
