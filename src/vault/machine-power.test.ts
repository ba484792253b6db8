import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Machine } from '../domain/model.ts';
import { consoleOf, followConsole, linesAfter } from './machine-power.ts';
import type { VaultContext } from './vault-context.ts';

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

test('a drill console stream: new lines within a poll, kept open while the host is away, ended with its drill', async () => {
  const drill = {
    hostId: 'h2',
    viewId: 'v1',
    vmName: 'web-1-drill',
    pointId: 'p1',
    pointTime: '2026-12-01T00:00:00.000Z',
    disks: [],
    startedAt: '2026-12-01T00:01:00.000Z',
    network: 'isolated',
  };
  let machine: {
    id: string;
    name: string;
    state: string;
    runtime: { test: typeof drill | null; failover: null };
  } = {
    id: 'vm-1',
    name: 'web-1',
    state: 'test-failover-active',
    runtime: { test: drill, failover: null },
  };
  const log = ['boot: ok'];
  let connected = true;
  const vault = {
    store: { machines: { get: async () => machine } },
    hosts: {
      isConnected: () => connected,
      call: async (_host: string, method: string, params: { name: string }) => {
        assert.equal(method, 'hypervisor.consoleLog');
        assert.equal(params.name, 'web-1-drill');
        return { name: params.name, lines: [...log] };
      },
    },
  } as unknown as VaultContext;
  const sent: { line: string; at: number }[] = [];
  let stop = false;
  const following = followConsole(
    vault,
    machine as unknown as Machine,
    [...log],
    50,
    {
      send: async (line) => {
        sent.push({ line, at: Date.now() });
      },
      stopped: () => stop,
      onAbort: () => {},
    },
    'drill',
  );
  const seen = async (line: string) => {
    const end = Date.now() + 5000;
    while (!sent.some((s) => s.line === line)) {
      assert.ok(Date.now() < end, `'${line}' not sent; sent ${JSON.stringify(sent)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return sent.find((s) => s.line === line)!.at;
  };
  await seen('boot: ok');
  const written = Date.now();
  log.push('login:');
  assert.ok((await seen('login:')) - written < 1000, 'within a second');
  // The host goes away for a while: the stream waits, then goes on without repeating a line.
  connected = false;
  log.push('while away');
  await new Promise((r) => setTimeout(r, 1200));
  assert.ok(!sent.some((s) => s.line === 'while away'));
  connected = true;
  log.push('back');
  await seen('back');
  assert.deepEqual(
    sent.map((s) => s.line),
    ['boot: ok', 'login:', 'while away', 'back'],
  );
  // The drill is cleaned up: the stream ends by itself.
  machine = { ...machine, state: 'protected', runtime: { test: null, failover: null } };
  const ended = await Promise.race([
    following.then(() => true),
    new Promise((r) => setTimeout(() => r(false), 3000)),
  ]);
  stop = true;
  assert.equal(ended, true, 'the stream ended with the drill');
});

test("the console is the failover copy's while it runs, and the machine's own once it is back at the primary", async () => {
  const asked: string[] = [];
  const vault = {
    hosts: {
      isConnected: () => true,
      call: async (hostId: string, method: string, params: { name: string }) => {
        assert.equal(method, 'hypervisor.consoleLog');
        asked.push(`${hostId}/${params.name}`);
        return { lines: [] };
      },
    },
  } as unknown as VaultContext;
  const copy = { hostId: 'recovery', vmName: 'web-1-dr', viewId: 'v1' };
  const at = (state: string, activeHostId: string) =>
    ({
      id: 'vm-1',
      name: 'web-1',
      state,
      primaryHostId: 'primary',
      activeHostId,
      recoverySettings: { targetName: 'web-1-dr' },
      runtime: { test: null, failover: copy },
    }) as unknown as Machine;
  for (const machine of [
    at('failing-over', 'primary'),
    at('failed-over', 'recovery'),
    at('committing', 'recovery'),
    at('failing-back', 'recovery'),
    // Failed back: the copy stays recorded (shut down) until commit, the machine runs at the primary.
    at('failed-back', 'primary'),
    at('committing', 'primary'),
  ]) {
    await consoleOf(vault, machine);
  }
  assert.deepEqual(asked, [
    'recovery/web-1-dr',
    'recovery/web-1-dr',
    'recovery/web-1-dr',
    'recovery/web-1-dr',
    'primary/web-1',
    'primary/web-1',
  ]);
});
