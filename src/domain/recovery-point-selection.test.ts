import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { catchHavenError } from '../testing/catch-haven-error.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import type { RecoveryPoint } from './model.ts';
import {
  pointsToDeleteOnCommit,
  pointsWithinRetention,
  selectGroupRecoveryPoint,
  selectRecoveryPoint,
} from './recovery-point-selection.ts';

/** Seeded, so every failing catalog can be replayed from its seed. */
function prng(seed: number): () => number {
  const source = new SeededRandom(seed);
  return () => source.next();
}

const MACHINES = [
  { id: 'm-a', name: 'web-01' },
  { id: 'm-b', name: 'db-01' },
  { id: 'm-c', name: 'cache-01' },
];
const BASE = Date.parse('2026-11-01T00:00:00.000Z');

/**
 * A random catalog: few distinct times (so ties happen), some group cuts, some
 * points missing from cuts. Times never go back as sequences grow, as in a
 * replica's history.
 */
function randomCatalog(random: () => number): RecoveryPoint[] {
  const points: RecoveryPoint[] = [];
  const count = Math.floor(random() * 12);
  let n = 0;
  let minutes = 0;
  for (let i = 0; i < count; i++) {
    minutes += random() < 0.5 ? 0 : 1;
    const time = new Date(BASE + minutes * 60_000).toISOString();
    const cut = random() < 0.4 ? `g-${i}` : null;
    for (const m of MACHINES) {
      // Group cuts sometimes miss a member; plain points belong to one machine.
      if (cut === null ? random() < 0.6 : random() < 0.15) continue;
      points.push({
        // Ids as text do not sort like their sequences (p-10 < p-9): only sequences order points.
        id: `p-${n}`,
        sequence: n++,
        machineId: m.id,
        time,
        type: random() < 0.4 ? 'app-consistent' : 'crash-consistent',
        groupPointId: cut,
        processed: random() < 0.7,
        sizeBytes: Math.floor(random() * 4096),
      });
    }
  }
  // Shuffle so nothing depends on catalog order.
  for (let i = points.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [points[i], points[j]] = [points[j]!, points[i]!];
  }
  return points;
}

/** Brute force: sort every candidate newest first (time, then sequence) and take the first. */
function bruteNewest(points: RecoveryPoint[]): RecoveryPoint | undefined {
  return [...points].sort((a, b) =>
    a.time !== b.time ? (a.time < b.time ? 1 : -1) : b.sequence - a.sequence,
  )[0];
}

function bruteGroup(catalog: RecoveryPoint[], memberIds: string[], appConsistent: boolean) {
  const ids = [...new Set(catalog.map((p) => p.groupPointId).filter((g) => g !== null))].sort().reverse();
  let best: { groupPointId: string; time: string; points: Record<string, RecoveryPoint> } | undefined;
  for (const g of ids) {
    const points: Record<string, RecoveryPoint> = {};
    let ok = true;
    for (const id of memberIds) {
      const p = catalog.find(
        (q) =>
          q.groupPointId === g &&
          q.machineId === id &&
          q.processed &&
          (!appConsistent || q.type === 'app-consistent'),
      );
      if (!p) ok = false;
      else points[id] = p;
    }
    if (!ok) continue;
    const time = Object.values(points)
      .map((p) => p.time)
      .sort()
      .at(-1)!;
    // On equal times the cut later in the first member's history wins.
    const first = memberIds[0]!;
    if (
      !best ||
      time > best.time ||
      (time === best.time && points[first]!.sequence > best.points[first]!.sequence)
    )
      best = { groupPointId: g, time, points };
  }
  return best;
}

function point(partial: Partial<RecoveryPoint> & Pick<RecoveryPoint, 'id' | 'time'>): RecoveryPoint {
  return {
    sequence: Date.parse(partial.time),
    machineId: 'm-a',
    type: 'crash-consistent',
    groupPointId: null,
    processed: true,
    sizeBytes: 1,
    ...partial,
  };
}

describe('recovery point selection against a brute-force model', () => {
  it('agrees on 1500 random catalogs for every option', () => {
    const counts = { found: 0, missing: 0 };
    for (let seed = 1; seed <= 1500; seed++) {
      const random = prng(seed);
      const catalog = randomCatalog(random);
      const machine = MACHINES[seed % MACHINES.length]!;
      const own = catalog.filter((p) => p.machineId === machine.id);
      const ctx = `seed ${seed}`;

      const single: [
        'latest' | 'latest-processed' | 'latest-app-consistent',
        RecoveryPoint | undefined,
        RegExp,
      ][] = [
        ['latest', bruteNewest(own), /No recovery point yet for machine '(web|db|cache)-01'/],
        ['latest-processed', bruteNewest(own.filter((p) => p.processed)), /No processed recovery point yet/],
        [
          'latest-app-consistent',
          bruteNewest(own.filter((p) => p.type === 'app-consistent')),
          /No app-consistent point yet for machine/,
        ],
      ];
      for (const [option, want, message] of single) {
        if (want) {
          counts.found++;
          const got = selectRecoveryPoint(catalog, machine, { option });
          assert.equal(got.point, want, `${ctx} ${option}`);
          assert.equal(got.needsProcessing, !want.processed, `${ctx} ${option}`);
        } else {
          counts.missing++;
          const error = catchHavenError(() => selectRecoveryPoint(catalog, machine, { option }));
          assert.equal(error.code, 'not_found', `${ctx} ${option}`);
          assert.match(error.message, message);
          assert.ok(error.message.includes(machine.name));
        }
      }

      // Multi-machine: a random non-empty subset of the machines, always including `machine`.
      const members = MACHINES.filter((m) => m === machine || random() < 0.6);
      for (const option of [
        'latest-multi-machine-processed',
        'latest-multi-machine-app-consistent',
      ] as const) {
        const want = bruteGroup(
          catalog,
          members.map((m) => m.id),
          option === 'latest-multi-machine-app-consistent',
        );
        if (want) {
          const group = selectGroupRecoveryPoint(catalog, members, option);
          assert.equal(group.groupPointId, want.groupPointId, `${ctx} ${option}`);
          assert.equal(group.time, want.time, `${ctx} ${option}`);
          assert.deepEqual(group.points, want.points, `${ctx} ${option}`);
          const got = selectRecoveryPoint(catalog, machine, { option, members });
          assert.equal(got.point, want.points[machine.id], `${ctx} ${option}`);
          assert.equal(got.needsProcessing, false);
        } else {
          const error = catchHavenError(() => selectRecoveryPoint(catalog, machine, { option, members }));
          assert.equal(error.code, 'not_found', `${ctx} ${option}`);
          assert.match(error.message, /multi-machine point yet shared by every machine/);
          for (const m of members) assert.ok(error.message.includes(m.name));
        }
      }

      // Custom: every point in the catalog is allowed for its own machine only.
      for (const p of catalog) {
        if (p.machineId === machine.id) {
          const got = selectRecoveryPoint(catalog, machine, { option: 'custom', pointId: p.id });
          assert.equal(got.point, p);
          assert.equal(got.needsProcessing, !p.processed);
        } else {
          const error = catchHavenError(() =>
            selectRecoveryPoint(catalog, machine, { option: 'custom', pointId: p.id }),
          );
          assert.equal(error.code, 'conflict', ctx);
        }
      }
    }
    // The generator must exercise both outcomes, or the property says little.
    assert.ok(counts.found > 1000 && counts.missing > 300, JSON.stringify(counts));
  });

  it('orders by sequence, never by id as text: …@1000 is newer than …@999, also at the same time', () => {
    const time = '2026-11-01T10:00:00.123Z';
    const catalog = [
      point({ id: 'm-a/disk0@1000', time, sequence: 1000 }),
      point({ id: 'm-a/disk0@999', time, sequence: 999 }),
    ];
    const m = MACHINES[0]!;
    for (const order of [catalog, [...catalog].reverse()]) {
      assert.equal(selectRecoveryPoint(order, m, { option: 'latest' }).point.id, 'm-a/disk0@1000');
      assert.equal(selectRecoveryPoint(order, m, { option: 'latest-processed' }).point.id, 'm-a/disk0@1000');
    }
    // A clock that went back does not reorder one machine's history.
    const skewed = [
      point({ id: 'm-a/disk0@1000', time: '2026-11-01T09:59:59.000Z', sequence: 1000 }),
      point({ id: 'm-a/disk0@999', time, sequence: 999 }),
    ];
    assert.equal(selectRecoveryPoint(skewed, m, { option: 'latest' }).point.id, 'm-a/disk0@1000');
    // Retention keeps the newest by sequence.
    const kept = pointsWithinRetention(catalog, { retentionSeconds: 1 }, '2026-11-02T00:00:00Z');
    assert.deepEqual(
      kept.map((p) => p.id),
      ['m-a/disk0@1000'],
    );
  });

  it('prefers an unprocessed newer point for latest, a processed one for latest-processed', () => {
    const catalog = [
      point({ id: 'old', time: '2026-11-01T10:00:00Z', processed: true }),
      point({ id: 'new', time: '2026-11-01T10:05:00Z', processed: false }),
    ];
    const m = MACHINES[0]!;
    assert.deepEqual(selectRecoveryPoint(catalog, m, { option: 'latest' }), {
      point: catalog[1],
      needsProcessing: true,
    });
    assert.deepEqual(selectRecoveryPoint(catalog, m, { option: 'latest-processed' }), {
      point: catalog[0],
      needsProcessing: false,
    });
  });

  it('adds the machine to its group members and ignores a cut one member lacks', () => {
    const catalog = [
      point({ id: 'a1', machineId: 'm-a', time: '2026-11-01T10:00:00Z', groupPointId: 'g1' }),
      point({ id: 'b1', machineId: 'm-b', time: '2026-11-01T10:00:00Z', groupPointId: 'g1' }),
      point({ id: 'a2', machineId: 'm-a', time: '2026-11-01T10:10:00Z', groupPointId: 'g2' }),
    ];
    const got = selectRecoveryPoint(catalog, MACHINES[0]!, {
      option: 'latest-multi-machine-processed',
      members: [MACHINES[1]!],
    });
    assert.equal(got.point.id, 'a1');
  });

  it('refuses unknown custom points and empty groups', () => {
    assert.equal(
      catchHavenError(() => selectRecoveryPoint([], MACHINES[0]!, { option: 'custom', pointId: 'nope' }))
        .code,
      'not_found',
    );
    assert.equal(
      catchHavenError(() => selectGroupRecoveryPoint([], [], 'latest-multi-machine-processed')).code,
      'bad_request',
    );
  });
});

describe('retention and commit', () => {
  const now = '2026-11-02T00:00:00.000Z';
  const day = 24 * 3600;

  it('keeps points within the window, and each machine newest point', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const random = prng(seed);
      const points: RecoveryPoint[] = [];
      for (let i = 0; i < 20; i++) {
        const ageSeconds = Math.floor(random() * 3 * day);
        points.push(
          point({
            id: `p-${i}`,
            machineId: MACHINES[Math.floor(random() * 3)]!.id,
            time: new Date(Date.parse(now) - ageSeconds * 1000).toISOString(),
          }),
        );
      }
      const retention = Math.floor(random() * 2 * day);
      const kept = pointsWithinRetention(points, { retentionSeconds: retention }, new Date(now));
      for (const p of points) {
        const age = (Date.parse(now) - Date.parse(p.time)) / 1000;
        const isNewest = bruteNewest(points.filter((q) => q.machineId === p.machineId)) === p;
        assert.equal(kept.includes(p), age <= retention || isNewest, `seed ${seed} ${p.id}`);
      }
    }
  });

  it('keeps the point exactly at the edge of the window', () => {
    const edge = point({ id: 'edge', time: '2026-11-01T00:00:00.000Z' });
    const newer = point({ id: 'newer', time: '2026-11-01T12:00:00.000Z' });
    const older = point({ id: 'older', time: '2026-10-31T23:59:59.000Z' });
    assert.deepEqual(
      pointsWithinRetention([older, edge, newer], { retentionSeconds: day }, now).map((p) => p.id),
      ['edge', 'newer'],
    );
  });

  it('deletes every other point of the same machine on commit', () => {
    const points = [
      point({ id: 'a1', machineId: 'm-a', time: '2026-11-01T10:00:00Z' }),
      point({ id: 'a2', machineId: 'm-a', time: '2026-11-01T10:01:00Z' }),
      point({ id: 'b1', machineId: 'm-b', time: '2026-11-01T10:00:00Z' }),
      point({ id: 'a3', machineId: 'm-a', time: '2026-11-01T10:02:00Z' }),
    ];
    assert.deepEqual(
      pointsToDeleteOnCommit(points, 'a2').map((p) => p.id),
      ['a1', 'a3'],
    );
    assert.equal(catchHavenError(() => pointsToDeleteOnCommit(points, 'zz')).code, 'not_found');
  });
});
