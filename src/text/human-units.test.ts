import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ago, formatBytes, formatDuration } from './human-units.ts';

test('relative times in one unit', () => {
  const now = Date.parse('2026-12-05T12:00:00Z');
  assert.equal(ago('2026-12-05T11:57:00Z', now), '3 min ago');
  assert.equal(ago('2026-12-05T11:59:48Z', now), '12 s ago');
  assert.equal(ago('2026-12-05T07:00:00Z', now), '5 h ago');
  assert.equal(ago('2026-12-03T11:00:00Z', now), '2 d ago');
  assert.equal(ago('2026-12-05T12:03:00Z', now), 'in 3 min');
  assert.equal(ago(null, now), 'never');
});

test('durations and sizes', () => {
  assert.equal(formatDuration(900), '15 min');
  assert.equal(formatDuration(5400), '1 h 30 min');
  assert.equal(formatDuration(86_400), '1 d');
  assert.equal(formatBytes(2 ** 30), '1.0 GiB');
  assert.equal(formatBytes(512), '512 B');
});
