import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from '../errors/index.ts';
import { ago, formatBytes, formatDuration, parseDuration, parseSize } from './human-units.ts';

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

test('durations are read with units, also as they are printed; a bare number is seconds as before', () => {
  assert.equal(parseDuration('90', 'rpo'), 90);
  assert.equal(parseDuration('90s', 'rpo'), 90);
  assert.equal(parseDuration('15m', 'rpo'), 900);
  assert.equal(parseDuration('1h30m', 'rpo'), 5400);
  assert.equal(parseDuration('1.5h', 'rpo'), 5400);
  assert.equal(parseDuration('250ms', 'rpo'), 0.25);
  assert.equal(parseDuration('2w', 'rpo'), 14 * 86_400);
  for (const seconds of [45, 900, 5400, 86_400, 93_600]) {
    assert.equal(parseDuration(formatDuration(seconds), 'rpo'), seconds, formatDuration(seconds));
  }
  for (const bad of ['', 'soon', '1 30', '15x', '-5m', 'm', '1h 30']) {
    assert.throws(
      () => parseDuration(bad, 'retention'),
      (e: unknown) =>
        e instanceof HavenError &&
        e.code === 'bad_request' &&
        e.message.startsWith(`--retention: '${bad}' is not a duration`),
      bad,
    );
  }
});

test('sizes are read with binary units, also as they are printed; a bare number is bytes', () => {
  assert.equal(parseSize('4096'), 4096);
  assert.equal(parseSize('1G'), 2 ** 30);
  assert.equal(parseSize('512MiB'), 512 * 2 ** 20);
  for (const bytes of [512, 2 ** 30, 3 * 2 ** 40]) assert.equal(parseSize(formatBytes(bytes)), bytes);
  for (const bad of ['', '0', '1X', '-1G', '0.3']) {
    assert.throws(() => parseSize(bad), { code: 'validation_failed' }, bad);
  }
});
