import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RecoveryPoint } from '../../domain/model.ts';
import { bootCheckResult, chooseDrillPoint, chooseDrillPoints, drillCopyNames } from './drill-machine.ts';

const point = (sequence: number, type: RecoveryPoint['type'], processed = true): RecoveryPoint => ({
  id: `m1@${sequence}`,
  machineId: 'm1',
  time: new Date(Date.UTC(2026, 11, 5, 0, 0, sequence)).toISOString(),
  sequence,
  type,
  groupPointId: null,
  processed,
  sizeBytes: 0,
});

test('a drill boots the newest point of the kind asked for, or a random retained one; never an unprocessed one', () => {
  const catalog = [
    point(1, 'crash-consistent'),
    point(2, 'app-consistent'),
    point(3, 'crash-consistent'),
    point(4, 'app-consistent', false),
  ];
  assert.equal(chooseDrillPoint(catalog, 'latest-app-consistent')?.sequence, 2);
  assert.equal(chooseDrillPoint(catalog, 'latest-crash-consistent')?.sequence, 3);
  const seen = new Set<number>();
  for (let i = 0; i < 3; i++) seen.add(chooseDrillPoint(catalog, 'random-retained', () => i)!.sequence);
  assert.deepEqual([...seen].sort(), [1, 2, 3]);
  assert.equal(chooseDrillPoint([point(1, 'crash-consistent')], 'latest-app-consistent'), null);
  assert.equal(chooseDrillPoint([], 'random-retained'), null);
});

test('the boot check: the console pattern, or any output, with the lines before it as evidence', () => {
  const lines = Array.from({ length: 30 }, (_, i) => `line ${i}`);
  lines[25] = 'recovered 42 ok';
  const up = bootCheckResult(lines, { consolePattern: 'recovered \\d+ ok', timeoutSeconds: 60 });
  assert.equal(up.up, true);
  assert.equal(up.evidence.split('\n').at(-1), 'recovered 42 ok');
  assert.equal(up.evidence.split('\n').length, 20);
  const not = bootCheckResult(lines.slice(0, 10), {
    consolePattern: 'recovered \\d+ ok',
    timeoutSeconds: 60,
  });
  assert.equal(not.up, false);
  assert.equal(not.evidence, lines.slice(0, 10).join('\n'));
  assert.equal(
    bootCheckResult(['haven-guest booted'], { consolePattern: null, timeoutSeconds: 60 }).up,
    true,
  );
  assert.equal(bootCheckResult([], { consolePattern: null, timeoutSeconds: 60 }).up, false);
});

test("a drill's names at the recovery host are its own and stable", () => {
  const machine = {
    id: 'abcdef12-3456',
    recoverySettings: { targetName: 'web', cpus: 1, memoryMiB: 128, nics: [] },
  };
  const names = drillCopyNames('0123abcd-ef', machine);
  assert.deepEqual(names, { viewId: 'drill-abcdef12-0123abcd', vmName: 'web-drill-0123abcd' });
  assert.deepEqual(drillCopyNames('0123abcd-ef', machine), names);
});

test('machines of a consistency group drilled together boot one shared cut; a machine drilled alone boots its own point', () => {
  const at = (machineId: string, sequence: number, type: RecoveryPoint['type'], cut: string | null) => ({
    id: `${machineId}@${sequence}`,
    machineId,
    time: new Date(Date.UTC(2026, 11, 5, 0, 0, sequence)).toISOString(),
    sequence,
    type,
    groupPointId: cut,
    processed: true,
    sizeBytes: 0,
  });
  const catalog: RecoveryPoint[] = [
    at('a', 1, 'app-consistent', 'cut-1'),
    at('b', 1, 'app-consistent', 'cut-1'),
    at('a', 2, 'crash-consistent', 'cut-2'),
    at('b', 2, 'crash-consistent', 'cut-2'),
    // Newer points of each member alone, in no shared cut.
    at('a', 3, 'app-consistent', null),
    at('b', 4, 'crash-consistent', 'cut-3'),
    at('c', 1, 'crash-consistent', null),
  ];
  const a = { id: 'a', name: 'a', groupId: 'g' };
  const b = { id: 'b', name: 'b', groupId: 'g' };
  const c = { id: 'c', name: 'c', groupId: null };
  const members = new Map([['g', [a, b]]]);
  const ids = (m: Map<string, RecoveryPoint | null>) =>
    Object.fromEntries([...m].map(([k, p]) => [k, p?.id ?? null]));
  assert.deepEqual(ids(chooseDrillPoints(catalog, [a, b, c], members, 'latest-app-consistent')), {
    a: 'a@1',
    b: 'b@1',
    c: null,
  });
  assert.deepEqual(ids(chooseDrillPoints(catalog, [a, b], members, 'latest-crash-consistent')), {
    a: 'a@2',
    b: 'b@2',
  });
  const sampled = new Set<string>();
  for (let i = 0; i < 2; i++) {
    const chosen = ids(chooseDrillPoints(catalog, [a, b], members, 'random-retained', () => i));
    assert.equal(chosen.a!.split('@')[1], chosen.b!.split('@')[1], 'both members from one cut');
    sampled.add(chosen.a!);
  }
  assert.equal(sampled.size, 2);
  // Alone, a member boots its own newest point of the kind.
  assert.deepEqual(ids(chooseDrillPoints(catalog, [a], members, 'latest-app-consistent')), { a: 'a@3' });
});
