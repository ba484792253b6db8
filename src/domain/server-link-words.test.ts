import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sampleLeg, sampleServerLink } from '../testing/sample-machine.ts';
import { serverLinkWords, serverSyncPercent } from './server-link-words.ts';

test('a server link in words: which leg is out, how far md is, when the agent last spoke', () => {
  assert.equal(serverLinkWords(sampleServerLink({})), 'in sync (1 leg)');
  assert.equal(serverSyncPercent(sampleServerLink({})), 100);
  assert.match(
    serverLinkWords(
      sampleServerLink({
        state: 'degraded',
        legs: [sampleLeg(), sampleLeg({ diskId: 'disk1', connected: false })],
      }),
    ),
    /^degraded: the NBD leg of disk1 is out;/,
  );
  const resync = sampleServerLink({
    state: 'syncing',
    legs: [sampleLeg({ md: 'resyncing', syncedBytes: (1 << 30) * 0.45 })],
  });
  assert.equal(serverLinkWords(resync), 'disk0 md resync 45%');
  assert.equal(serverSyncPercent(resync), 45);
  const silent = sampleServerLink({
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
  assert.match(
    serverLinkWords(sampleServerLink({ state: 'awaiting-enrolment', legs: [] })),
    /^awaiting the enrolment/,
  );
});
