import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from '../errors/index.ts';
import { machinePoints, type PointLister, seqOfPoint } from './machine-points.ts';
import { formatRecoveryPointRef, parseRecoveryPointRef } from './recovery-point-ref.ts';
import type { RecoveryPointInfo } from './retention.ts';

const point = (diskKey: string, seq: number, more: Partial<RecoveryPointInfo> = {}): RecoveryPointInfo => ({
  id: formatRecoveryPointRef({ kind: 'disk', diskKey, seq }),
  diskKey,
  seq,
  timeMs: seq * 1000,
  time: new Date(seq * 1000).toISOString(),
  type: 'crash-consistent',
  groupPointId: null,
  label: null,
  sizeBytes: seq,
  ...more,
});

const lister = (byDisk: Record<string, RecoveryPointInfo[]>): PointLister => ({
  listPoints: (diskKey) => byDisk[diskKey] ?? [],
});

test('a machine without replica disks has no points', () => {
  assert.deepEqual(machinePoints('vm1', [], lister({})), []);
});

test("a one-disk machine's points are its disk's points", () => {
  const store = lister({
    'vm1/d0': [point('vm1/d0', 7), point('vm1/d0', 9, { type: 'app-consistent', label: 'nightly' })],
  });
  const points = machinePoints('vm1', ['vm1/d0'], store);
  assert.deepEqual(
    points.map((p) => [p.id, p.type, p.processed, p.sizeBytes, p.machineId]),
    [
      ['vm1/d0@7', 'crash-consistent', true, 7, 'vm1'],
      ['vm1/d0@9', 'app-consistent', true, 9, 'vm1'],
    ],
  );
  assert.equal(seqOfPoint(store, 'vm1/d0', parseRecoveryPointRef(points[1]!.id)), 9);
});

test('several disks: only markers every disk holds are points, named by machine and marker', () => {
  const store = lister({
    'vm1/d0': [
      point('vm1/d0', 3),
      point('vm1/d0', 5, { groupPointId: 'cut-1', label: 'group cut' }),
      point('vm1/d0', 8, { type: 'app-consistent', label: 'app-1' }),
      point('vm1/d0', 9, { label: 'only-here' }),
    ],
    'vm1/d1': [
      point('vm1/d1', 4, { groupPointId: 'cut-1' }),
      point('vm1/d1', 6, { type: 'app-consistent', label: 'app-1' }),
    ],
  });
  const points = machinePoints('vm1', ['vm1/d0', 'vm1/d1'], store);
  assert.deepEqual(
    points.map((p) => [p.id, p.type, p.groupPointId]),
    [
      ['vm1@cut-1', 'crash-consistent', 'cut-1'],
      ['vm1@app-1', 'app-consistent', null],
    ],
  );
  const cut = parseRecoveryPointRef(points[0]!.id);
  assert.equal(seqOfPoint(store, 'vm1/d0', cut), 5);
  assert.equal(seqOfPoint(store, 'vm1/d1', cut), 4);
  assert.equal(seqOfPoint(store, 'vm1/d1', parseRecoveryPointRef('vm1@app-1')), 6);
});

test('a point a disk does not hold is not found', () => {
  const store = lister({ 'vm1/d0': [point('vm1/d0', 3)] });
  const notFound = (e: unknown) => e instanceof HavenError && e.code === 'not_found';
  assert.throws(() => seqOfPoint(store, 'vm1/d0', parseRecoveryPointRef('vm1@missing')), notFound);
  assert.throws(() => seqOfPoint(store, 'vm1/d0', parseRecoveryPointRef('vm1/d1@3')), notFound);
});
