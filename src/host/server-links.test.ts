/**
 * The state of a server's link (the contract's rule): in-sync only when every
 * leg is md-in-sync, allows points and is connected, and a fresh report says
 * every array is whole and idle; and the agent's report lines.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ServerAgentReport } from '../domain/index.ts';
import type { HavenError } from '../errors/index.ts';
import { sampleLeg } from '../testing/sample-machine.ts';
import { parseServerReport, serverLinkStateOf } from './server-links.ts';

const NOW = Date.parse('2026-01-01T00:01:00Z');
const leg = sampleLeg();
const disk: ServerAgentReport['disks'][number] = {
  diskId: 'disk0',
  array: '/dev/md0',
  legs: '[UU]',
  action: 'idle',
  progressPercent: null,
  bitmapDirtyChunks: 0,
};
const report = (secondsAgo: number, disks = [disk], stopping = false): ServerAgentReport => ({
  receivedAt: new Date(NOW - secondsAgo * 1000).toISOString(),
  hostname: 'web',
  agentVersion: '1',
  stopping,
  disks,
});

test('the state of a server link, case by case', () => {
  const cases: Array<[string, Partial<Parameters<typeof serverLinkStateOf>[0]>, string, RegExp | null]> = [
    ['everything whole and fresh', {}, 'in-sync', null],
    ['never enrolled', { enrolled: false, agent: null }, 'awaiting-enrolment', /has not enrolled/],
    ['enrolled, no report since start', { agent: null }, 'agent-silent', /no report/],
    ['report 31 s old (3 × 10 s)', { agent: report(31) }, 'agent-silent', /for 31 s \(expected every 10 s\)/],
    ['report 29 s old', { agent: report(29) }, 'in-sync', null],
    ['the server is stopping', { agent: report(1, [disk], true) }, 'agent-silent', /shutting down/],
    [
      'leg not connected',
      { legs: [{ ...leg, connected: false }] },
      'degraded',
      /disk0: its NBD leg is not connected/,
    ],
    [
      'array degraded',
      { agent: report(1, [{ ...disk, legs: '[U_]', action: 'degraded' }]) },
      'degraded',
      /\[U_\]/,
    ],
    ['the agent leaves a disk out', { agent: report(1, []) }, 'degraded', /does not report it/],
    ['no leg here', { legs: [] }, 'degraded', /no md leg/],
    [
      'the recovery environment copies (every leg connected, no array reported)',
      {
        agent: {
          ...report(1, []),
          failback: { phase: 'copying', copiedBytes: 10, totalBytes: 40, elapsedMs: 5, problem: null },
        },
      },
      'degraded',
      /failback onto the server: its recovery environment copied 10 of 40 bytes/,
    ],
    [
      'the recovery environment is done',
      {
        agent: {
          ...report(1, [disk]),
          failback: { phase: 'done', copiedBytes: 40, totalBytes: 40, elapsedMs: 9, problem: null },
        },
      },
      'degraded',
      /wrote the failback \(40 bytes\); the server boots its own system/,
    ],
    [
      'md resyncing',
      { legs: [{ ...leg, md: 'resyncing', pointsAllowed: false, syncedBytes: 1 << 29 }] },
      'syncing',
      /resyncing \(536870912 of 1073741824 bytes\)/,
    ],
    [
      'array recovering',
      { agent: report(1, [{ ...disk, action: 'recovery', progressPercent: 40 }]) },
      'syncing',
      /recovery 40%/,
    ],
    [
      'no superblock seen yet',
      { legs: [{ ...leg, md: 'unknown', pointsAllowed: false }] },
      'syncing',
      /no md superblock/,
    ],
    [
      'in sync but points not yet allowed',
      { legs: [{ ...leg, pointsAllowed: false }] },
      'syncing',
      /not yet trusted/,
    ],
  ];
  for (const [what, change, state, problem] of cases) {
    const judged = serverLinkStateOf({
      enrolled: true,
      legs: [leg],
      agent: report(1),
      nowMs: NOW,
      reportIntervalSeconds: 10,
      ...change,
    });
    assert.equal(judged.state, state, what);
    if (problem === null) assert.equal(judged.problem, null, what);
    else assert.match(judged.problem ?? '', problem, what);
  }
});

test('report lines: known keys parsed, unknown ones skipped, a malformed line refused by name', () => {
  assert.equal(
    parseServerReport('disk disk0 /dev/md0 [UU] idle - 0 46\n', 't').disks[0]?.mdEvents,
    46,
    "md's event count, when the agent says it",
  );
  const parsed = parseServerReport(
    'hostname web 01\nversion 0.1\nstate stopping\nfuture thing\ndisk disk0 /dev/md0 [U_] recovery 12.5% 33\n',
    '2026-01-01T00:00:00.000Z',
  );
  assert.deepEqual(parsed, {
    receivedAt: '2026-01-01T00:00:00.000Z',
    hostname: 'web 01',
    agentVersion: '0.1',
    stopping: true,
    disks: [
      {
        diskId: 'disk0',
        array: '/dev/md0',
        legs: '[U_]',
        action: 'recovery',
        progressPercent: 12.5,
        bitmapDirtyChunks: 33,
        mdEvents: null,
      },
    ],
  });
  for (const [line, why] of [
    ['disk disk0 /dev/md0 [UU] idle -', /expected disk ID/],
    ['disk d/0 /dev/md0 [UU] idle - -', /not a disk id/],
    ['disk disk0 /dev/md0 [UX] idle - -', /not like \[UU\]/],
    ['disk disk0 /dev/md0 [UU] sleeping - -', /idle, resync, recovery or degraded/],
    ['disk disk0 /dev/md0 [UU] idle x -', /'x' is not a number/],
  ] as const) {
    assert.throws(
      () => parseServerReport(line, '2026-01-01T00:00:00.000Z'),
      (e: HavenError) => e.code === 'bad_request' && why.test(e.message),
      line,
    );
  }
});
