import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ServerLegState, ServerLinkSnapshot } from './model.ts';
import { serverLinkWords, serverSyncPercent } from './server-link-words.ts';

const leg = (over: Partial<ServerLegState> = {}): ServerLegState => ({
  diskId: 'disk0',
  sizeBytes: 1 << 30,
  connected: true,
  md: 'in-sync',
  syncedBytes: null,
  pointsAllowed: true,
  lastWriteAt: null,
  ...over,
});
const link = (over: Partial<ServerLinkSnapshot>): ServerLinkSnapshot => ({
  state: 'in-sync',
  legs: [leg()],
  agent: null,
  problem: null,
  ...over,
});

test('a server link in words: which leg is out, how far md is, when the agent last spoke', () => {
  assert.equal(serverLinkWords(link({})), 'in sync (1 leg)');
  assert.equal(serverSyncPercent(link({})), 100);
  assert.match(
    serverLinkWords(link({ state: 'degraded', legs: [leg(), leg({ diskId: 'disk1', connected: false })] })),
    /^degraded: the NBD leg of disk1 is out;/,
  );
  const resync = link({ state: 'syncing', legs: [leg({ md: 'resyncing', syncedBytes: (1 << 30) * 0.45 })] });
  assert.equal(serverLinkWords(resync), 'disk0 md resync 45%');
  assert.equal(serverSyncPercent(resync), 45);
  const silent = link({
    state: 'agent-silent',
    agent: {
      receivedAt: '2025-01-01T00:00:00Z',
      hostname: 'web-01',
      agentVersion: '1',
      stopping: false,
      disks: [],
    },
  });
  assert.match(serverLinkWords(silent), /last report 2025-01-01T00:00:00Z\)/);
  assert.match(
    serverLinkWords(silent, () => '3 min ago'),
    /agent is silent \(last report 3 min ago\)/,
  );
  assert.match(serverLinkWords(link({ state: 'awaiting-enrolment', legs: [] })), /^awaiting the enrolment/);
});
