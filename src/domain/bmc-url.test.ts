import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HavenError } from '../errors/index.ts';
import { bmcUrlOf, parseBmcUrl } from './bmc-url.ts';

describe("a server's BMC as an operator types it", () => {
  it('ipmi://USER@HOST[:PORT][?cipher=N], port 623 by default, and back', () => {
    const plain = parseBmcUrl('ipmi://admin@10.0.9.1');
    assert.deepEqual(plain, {
      protocol: 'ipmi',
      address: '10.0.9.1',
      port: 623,
      user: 'admin',
      cipherSuite: null,
    });
    assert.equal(bmcUrlOf(plain), 'ipmi://admin@10.0.9.1:623');
    const full = parseBmcUrl('ipmi://haven@[fd00::9]:6230?cipher=17');
    assert.deepEqual(full, {
      protocol: 'ipmi',
      address: 'fd00::9',
      port: 6230,
      user: 'haven',
      cipherSuite: 17,
    });
    assert.deepEqual(parseBmcUrl(bmcUrlOf(full)), full);
  });

  it('refuses what it cannot use, naming the option, never echoing a password', () => {
    for (const [text, why] of [
      ['redfish://admin@bmc', /uses 'redfish' \(only ipmi is supported\)/],
      ['ipmi://bmc', /names no user/],
      ['ipmi://admin@bmc/x', /has a path/],
      ['ipmi://admin@bmc?cipher=99', /cipher suite that is not 0-17/],
      ['bmc', /is not a URL/],
    ] as const) {
      assert.throws(
        () => parseBmcUrl(text, '--bmc'),
        (e: unknown) =>
          e instanceof HavenError &&
          e.code === 'bad_request' &&
          why.test(e.message) &&
          e.message.startsWith('--bmc: '),
        text,
      );
    }
    assert.throws(
      () => parseBmcUrl('ipmi://admin:hunter2@bmc'),
      (e: unknown) =>
        e instanceof HavenError && /holds a password/.test(e.message) && !e.message.includes('hunter2'),
    );
  });
});
