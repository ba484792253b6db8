import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diskIdOf, diskKeyOf, isDiskOf } from './disk-key.ts';

test('a disk key names the machine and the disk', () => {
  const key = diskKeyOf('vm1', 'd0');
  assert.equal(key, 'vm1/d0');
  assert.equal(diskIdOf(key), 'd0');
  assert.ok(isDiskOf(key, 'vm1'));
});

test("a machine whose id starts another's does not own its disks", () => {
  assert.ok(!isDiskOf(diskKeyOf('vm10', 'd0'), 'vm1'));
});
