import assert from 'node:assert/strict';
import { test } from 'node:test';
import { linesAfter } from './machine-power.ts';

test('console follow finds the new lines after the last ones sent, also when lines repeat', () => {
  assert.deepEqual(linesAfter(['a', 'b'], 2, ['a', 'b', 'c']), ['c']);
  // Repeated lines: where the last read ended wins over the latest match.
  assert.deepEqual(linesAfter(['x', 'x'], 2, ['x', 'x', 'x']), ['x']);
  // The host dropped the oldest lines (it keeps the last MiB): found by content.
  assert.deepEqual(linesAfter(['c', 'd'], 4, ['c', 'd', 'e']), ['e']);
  // A new run: everything.
  assert.deepEqual(linesAfter(['c', 'd'], 4, ['booted']), ['booted']);
  assert.deepEqual(linesAfter([], 0, ['first']), ['first']);
});
