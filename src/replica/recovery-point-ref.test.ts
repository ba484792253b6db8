import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from '../errors/index.ts';
import {
  formatRecoveryPointRef,
  parseRecoveryPointRef,
  type RecoveryPointRef,
} from './recovery-point-ref.ts';

test('disk and marker references survive the trip through their text form', () => {
  const refs: RecoveryPointRef[] = [
    { kind: 'disk', diskKey: 'vm1/d0', seq: 0 },
    { kind: 'disk', diskKey: '5f0c2a4e-machine/disk-1', seq: 123456789 },
    { kind: 'marker', machineId: 'vm1', marker: '0b7e6c1e-group-cut' },
    { kind: 'marker', machineId: 'vm1', marker: 'app-consistent group a@b' },
  ];
  for (const ref of refs) assert.deepEqual(parseRecoveryPointRef(formatRecoveryPointRef(ref)), ref);
});

test('the text form is the one ids always had on the wire', () => {
  assert.equal(formatRecoveryPointRef({ kind: 'disk', diskKey: 'vm1/d0', seq: 42 }), 'vm1/d0@42');
  assert.equal(formatRecoveryPointRef({ kind: 'marker', machineId: 'vm1', marker: 'm-1' }), 'vm1@m-1');
});

test('points of a disk order by sequence number, not by text', () => {
  const ids = ['vm1/d0@1000', 'vm1/d0@999'];
  assert.deepEqual([...ids].sort(), ['vm1/d0@1000', 'vm1/d0@999']);
  const seqOf = (id: string) => {
    const ref = parseRecoveryPointRef(id);
    assert.equal(ref.kind, 'disk');
    return ref.seq;
  };
  assert.deepEqual(
    [...ids].sort((a, b) => seqOf(a) - seqOf(b)),
    ['vm1/d0@999', 'vm1/d0@1000'],
  );
  assert.ok(seqOf('vm1/d0@999') < seqOf('vm1/d0@1000'));
});

test('text that names no point is refused', () => {
  for (const id of ['', 'vm1/d0', '@5', 'vm1/d0@', 'vm1/d0@12x', 'vm1/d0@-1', 'vm1/d0@1.5']) {
    assert.throws(
      () => parseRecoveryPointRef(id),
      (e: unknown) => e instanceof HavenError && e.code === 'bad_request',
      id,
    );
  }
});
