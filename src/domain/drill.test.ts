import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeededRandom } from '../testing/seeded-random.ts';
import {
  cadenceProblems,
  type DrillCheck,
  describeCadence,
  drillPassed,
  drillProbeAddress,
  nextDrillRunAfter,
} from './drill.ts';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number) => new Date(ms).toISOString();

test('daily at a wall-clock time in a zone: the next occurrence, across daylight saving changes', () => {
  const daily = { kind: 'daily' as const, at: '02:00', timeZone: 'Europe/Amsterdam' };
  // Winter: UTC+1.
  assert.equal(iso(nextDrillRunAfter(daily, at('2026-12-05T12:00:00Z'))), '2026-12-06T01:00:00.000Z');
  assert.equal(iso(nextDrillRunAfter(daily, at('2026-12-06T00:59:59Z'))), '2026-12-06T01:00:00.000Z');
  // Strictly after: at the run's own instant, the next day's.
  assert.equal(iso(nextDrillRunAfter(daily, at('2026-12-06T01:00:00Z'))), '2026-12-07T01:00:00.000Z');
  // Summer: UTC+2.
  assert.equal(iso(nextDrillRunAfter(daily, at('2026-07-01T12:00:00Z'))), '2026-07-02T00:00:00.000Z');
  // Spring forward (2026-03-29, 02:00 → 03:00): 02:00 does not exist that night and moves to 03:00 CEST.
  assert.equal(iso(nextDrillRunAfter(daily, at('2026-03-28T12:00:00Z'))), '2026-03-29T01:00:00.000Z');
  const half = { ...daily, at: '02:30' };
  assert.equal(iso(nextDrillRunAfter(half, at('2026-03-28T12:00:00Z'))), '2026-03-29T01:30:00.000Z');
  // Autumn back (2026-10-25, 03:00 → 02:00): 02:30 occurs twice and runs once, at the first.
  assert.equal(iso(nextDrillRunAfter(half, at('2026-10-24T12:00:00Z'))), '2026-10-25T00:30:00.000Z');
  assert.equal(iso(nextDrillRunAfter(half, at('2026-10-25T00:30:00Z'))), '2026-10-26T01:30:00.000Z');
  // Other zones.
  assert.equal(
    iso(nextDrillRunAfter({ kind: 'daily', at: '23:15', timeZone: 'UTC' }, at('2026-12-05T23:15:00Z'))),
    '2026-12-06T23:15:00.000Z',
  );
  assert.equal(
    iso(
      nextDrillRunAfter({ kind: 'daily', at: '00:00', timeZone: 'Asia/Kolkata' }, at('2026-12-05T12:00:00Z')),
    ),
    '2026-12-05T18:30:00.000Z',
  );
});

test('property: a daily run is after the given time, within a day and a bit, and at the wanted wall-clock time', () => {
  const rnd = new SeededRandom(15);
  const zones = [
    'UTC',
    'Europe/Amsterdam',
    'America/New_York',
    'Australia/Lord_Howe',
    'Asia/Kolkata',
    'America/Sao_Paulo',
  ];
  for (let i = 0; i < 2000; i++) {
    const zone = zones[rnd.int(0, zones.length - 1)]!;
    const hh = String(rnd.int(0, 23)).padStart(2, '0');
    const mm = String(rnd.int(0, 59)).padStart(2, '0');
    const after = at('2026-01-01T00:00:00Z') + rnd.int(0, 730) * 86_400_000 + rnd.int(0, 86_399) * 1000;
    const next = nextDrillRunAfter({ kind: 'daily', at: `${hh}:${mm}`, timeZone: zone }, after);
    assert.ok(next > after, `${hh}:${mm} ${zone} after ${iso(after)}: ${iso(next)}`);
    assert.ok(next - after <= 26 * 3_600_000, `${hh}:${mm} ${zone} after ${iso(after)}: ${iso(next)}`);
    const wall = new Intl.DateTimeFormat('en-GB', {
      timeZone: zone,
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    }).format(next);
    // Only a time inside a daylight saving gap runs at another wall-clock time.
    if (wall !== `${hh}:${mm}`) {
      const before = new Intl.DateTimeFormat('en-GB', {
        timeZone: zone,
        hour: '2-digit',
        minute: '2-digit',
        hourCycle: 'h23',
      }).format(next - 3_600_000);
      assert.notEqual(before, `${hh}:${mm}`, `${hh}:${mm} ${zone}: ran at ${wall}, and the time existed`);
    }
  }
});

test('every N hours counts from the last run; a vault down for several periods runs once', () => {
  const every = { kind: 'every' as const, hours: 6 };
  assert.equal(iso(nextDrillRunAfter(every, at('2026-12-05T12:00:00Z'))), '2026-12-05T18:00:00.000Z');
  assert.equal(
    iso(nextDrillRunAfter(every, at('2026-12-05T12:00:00Z'), at('2026-12-05T10:00:00Z'))),
    '2026-12-05T16:00:00.000Z',
  );
  assert.equal(
    iso(nextDrillRunAfter(every, at('2026-12-05T12:00:00Z'), at('2026-12-01T10:00:00Z'))),
    '2026-12-05T12:00:00.001Z',
  );
});

test('a cadence with problems names each at its field', () => {
  assert.deepEqual(
    cadenceProblems({ kind: 'daily', at: '2:00', timeZone: 'Mars/Olympus' }).map((p) => p.field),
    ['cadence.at', 'cadence.timeZone'],
  );
  assert.equal(cadenceProblems({ kind: 'every', hours: 0 })[0]?.code, 'out_of_range');
  assert.equal(cadenceProblems({ kind: 'every', hours: 1.5 })[0]?.code, 'not_integer');
  assert.deepEqual(cadenceProblems({ kind: 'daily', at: '23:59', timeZone: 'Europe/Amsterdam' }), []);
  assert.equal(describeCadence({ kind: 'daily', at: '02:00', timeZone: 'UTC' }), 'daily at 02:00 UTC');
  assert.equal(describeCadence({ kind: 'every', hours: 6 }), 'every 6 h');
});

test('a drill passes only with a passed check and none failed; not checked is never a pass on its own', () => {
  const check = (result: DrillCheck['result']): DrillCheck => ({
    kind: 'filesystems',
    name: 'x',
    result,
    summary: '',
    evidence: null,
    evidenceIsScriptOutput: false,
    startedAt: '2026-12-05T00:00:00Z',
    durationMs: 1,
  });
  assert.equal(drillPassed([check('passed'), check('not-checked')]), true);
  assert.equal(drillPassed([check('passed'), check('failed')]), false);
  assert.equal(drillPassed([check('not-checked')]), false);
  assert.equal(drillPassed([]), false);
});

test("the application check's address: the subnet's last usable one, never the drill machine's", () => {
  assert.equal(drillProbeAddress('10.0.0.2', 24), '10.0.0.254/24');
  assert.equal(drillProbeAddress('10.0.0.254', 24), '10.0.0.253/24');
  assert.equal(drillProbeAddress('172.16.5.9', 16), '172.16.255.254/16');
  assert.equal(drillProbeAddress('192.168.1.5', 30), '192.168.1.6/30');
  assert.equal(drillProbeAddress('192.168.1.6', 30), '192.168.1.5/30');
  assert.equal(drillProbeAddress('192.168.1.6', 31), null);
  assert.equal(drillProbeAddress('192.168.1.6', 32), null);
  assert.equal(drillProbeAddress('fe80::1', 64), null);
});
