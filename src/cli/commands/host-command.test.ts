import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HavenError } from '../../errors/index.ts';
import { serverAddressOption } from './host-command.ts';

test('--server-listen and --server-advertise: ADDR[:NBDPORT[:AGENTPORT]], IPv6 in brackets', () => {
  assert.deepEqual(serverAddressOption('0.0.0.0', 'server-listen'), { host: '0.0.0.0' });
  assert.deepEqual(serverAddressOption('primary.example:10900', 'server-listen'), {
    host: 'primary.example',
    nbdPort: 10900,
  });
  assert.deepEqual(serverAddressOption('[fd00::1]:1:2', 'server-advertise'), {
    host: 'fd00::1',
    nbdPort: 1,
    agentPort: 2,
  });
  for (const bad of ['', 'a:0', 'a:1:70000', 'a:1:2:3', 'fd00::1', 'a b']) {
    assert.throws(
      () => serverAddressOption(bad, 'server-listen'),
      (e: HavenError) =>
        e.code === 'bad_request' && e.message.startsWith(`--server-listen '${bad}' is not ADDR`),
      bad,
    );
  }
});
