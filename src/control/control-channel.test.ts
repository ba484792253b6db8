/**
 * The control channel over a real TLS connection on 127.0.0.1: ControlServer
 * and ControlClient against each other, plus a raw TLS peer for what a
 * well-behaved client never does (garbage, oversize frames, silence).
 */
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect, type TLSSocket } from 'node:tls';
import { HavenError } from '../errors/index.ts';
import { ControlClient, type ControlClientOptions } from './control-client.ts';
import { ControlServer, type ControlServerEvents, type ControlServerOptions } from './control-server.ts';
import { encodeFrame, FrameDecoder } from './frame-codec.ts';
import { createHostCredential, type HostCredential, proveHost } from './host-proof.ts';
import { generateVaultIdentity, type VaultIdentity } from './vault-identity.ts';

let identity: VaultIdentity;
let otherIdentity: VaultIdentity;
const hosts = new Map<string, HostCredential>();
const cleanups: Array<() => Promise<void> | void> = [];

before(async () => {
  [identity, otherIdentity] = await Promise.all([generateVaultIdentity(), generateVaultIdentity()]);
  hosts.set('h1', createHostCredential());
  hosts.set('h2', createHostCredential());
});

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

function isHavenError(code: string, message?: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof HavenError, `expected a HavenError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (message) assert.match(error.message, message);
    return true;
  };
}

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Records every event the server reports, in order, as "name:hostId". */
function recorder() {
  const log: string[] = [];
  const events: ControlServerEvents = {
    onHostConnected: (id) => void log.push(`connected:${id}`),
    onHostDisconnected: (id) => void log.push(`disconnected:${id}`),
    onHostHeartbeat: (id) => void log.push(`heartbeat:${id}`),
    onHostInventory: (id, inventory) => void log.push(`inventory:${id}:${JSON.stringify(inventory)}`),
    onHostEvent: (id, event) => void log.push(`event:${id}:${JSON.stringify(event)}`),
    onHostUnreachable: (id) => void log.push(`unreachable:${id}`),
    onHostReachable: (id) => void log.push(`reachable:${id}`),
    onRejected: (info) => void log.push(`rejected:${info.hostId}:${info.reason}`),
  };
  return { log, events, count: (entry: string) => log.filter((e) => e === entry).length };
}

async function startServer(options: Partial<ControlServerOptions> = {}, port = 0) {
  const lookups: string[] = [];
  const server = new ControlServer({
    keyPem: identity.keyPem,
    certPem: identity.certPem,
    credentialHash: async (hostId) => {
      lookups.push(hostId);
      return hosts.get(hostId)?.credentialHash;
    },
    heartbeatIntervalMs: 1000,
    authTimeoutMs: 2000,
    ...options,
  });
  const address = await server.listen({ host: '127.0.0.1', port });
  cleanups.push(() => server.close());
  return { server, address, lookups, controlAddress: `127.0.0.1:${address.port}` };
}

function startClient(controlAddress: string, options: Partial<ControlClientOptions> = {}) {
  const failures: HavenError[] = [];
  let connects = 0;
  const client = new ControlClient({
    address: controlAddress,
    vaultFingerprint: identity.fingerprint,
    hostId: 'h1',
    credentialHash: hosts.get('h1')!.credentialHash,
    handleRequest: async (method) => {
      throw new HavenError('not_available', `no ${method} here`);
    },
    onConnectFailed: (error) => void failures.push(error),
    onConnected: () => void connects++,
    reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
    ...options,
  });
  client.start();
  cleanups.push(() => client.stop());
  return { client, failures, connects: () => connects };
}

/** A bare TLS peer that speaks frames by hand. */
async function rawPeer(port: number) {
  const socket: TLSSocket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
  const decoder = new FrameDecoder();
  const frames: Record<string, unknown>[] = [];
  let closed = false;
  socket.on('data', (chunk: Buffer) => frames.push(...(decoder.push(chunk) as Record<string, unknown>[])));
  socket.on('error', () => {});
  socket.on('close', () => {
    closed = true;
  });
  cleanups.push(() => void socket.destroy());
  await waitFor('challenge', () => frames.length > 0);
  return {
    socket,
    frames,
    isClosed: () => closed,
    send: (message: unknown) => socket.write(encodeFrame(message)),
    /** Authenticates as `hostId` exactly as the client would. */
    async hello(hostId: string) {
      const nonce = frames[0]!.nonce as string;
      socket.write(
        encodeFrame({
          type: 'hello',
          protocol: 1,
          hostId,
          proof: proveHost(hosts.get(hostId)!.credentialHash, nonce),
        }),
      );
      await waitFor('handshake answer', () => frames.length > 1 || closed);
      return frames[1];
    },
  };
}

describe('authentication', () => {
  test('a host with the right secret gets a session, heartbeats and calls', async () => {
    const rec = recorder();
    const { server, controlAddress } = await startServer({ events: rec.events, heartbeatIntervalMs: 100 });
    const { client } = startClient(controlAddress, {
      handleRequest: async (method, params) => ({ method, params }),
    });
    await waitFor('connection', () => server.isConnected('h1') && client.connected);
    assert.deepEqual(server.connectedHosts(), ['h1']);
    assert.equal(rec.log[0], 'connected:h1');
    await waitFor('two heartbeats', () => rec.count('heartbeat:h1') >= 2);
    assert.deepEqual(await server.call('h1', 'echo', { a: 1 }), { method: 'echo', params: { a: 1 } });
  });

  test('a wrong secret is rejected with a reason and the host keeps retrying', async () => {
    const rec = recorder();
    const { server, controlAddress } = await startServer({ events: rec.events });
    const { failures } = startClient(controlAddress, { credentialHash: hosts.get('h2')!.credentialHash });
    await waitFor('two rejections', () => failures.length >= 2);
    assert.ok(failures.every(isHavenError('unauthenticated', /rejected host 'h1'.*credential is wrong/)));
    assert.ok(rec.log.some((e) => e.startsWith('rejected:h1:')));
    assert.equal(server.isConnected('h1'), false);
    assert.equal(rec.count('connected:h1'), 0);
  });

  test('an unknown host is rejected', async () => {
    const { server, controlAddress } = await startServer();
    const { failures } = startClient(controlAddress, { hostId: 'nobody' });
    await waitFor('rejection', () => failures.length >= 1);
    assert.ok(isHavenError('unauthenticated', /'nobody' is unknown/)(failures[0]));
    assert.deepEqual(server.connectedHosts(), []);
  });

  test('the host refuses a vault whose certificate does not match the pinned fingerprint', async () => {
    const { lookups, controlAddress } = await startServer();
    const { client, failures } = startClient(controlAddress, { vaultFingerprint: otherIdentity.fingerprint });
    await waitFor('refusal', () => failures.length >= 1);
    assert.ok(
      isHavenError('unauthenticated', /presented certificate fingerprint .* enrolled with/)(failures[0]),
    );
    assert.equal(client.connected, false);
    // The host never sent its proof to the impostor.
    assert.deepEqual(lookups, []);
  });

  test('a connection that never says hello is closed after the auth timeout', async () => {
    const rec = recorder();
    const { address } = await startServer({ events: rec.events, authTimeoutMs: 100 });
    const peer = await rawPeer(address.port);
    await waitFor('close', peer.isClosed);
    assert.equal(peer.frames[1]?.type, 'rejected');
    assert.match(String(peer.frames[1]?.reason), /authentication timeout/);
  });

  test('a newer connection for the same host replaces the older one', async () => {
    const rec = recorder();
    const { server, address } = await startServer({ events: rec.events });
    const first = await rawPeer(address.port);
    assert.equal((await first.hello('h1'))?.type, 'welcome');
    const second = await rawPeer(address.port);
    assert.equal((await second.hello('h1'))?.type, 'welcome');
    await waitFor('old socket closed', first.isClosed);
    assert.equal(second.isClosed(), false);
    assert.deepEqual(server.connectedHosts(), ['h1']);
    assert.equal(rec.count('connected:h1'), 2);
    assert.equal(rec.count('disconnected:h1'), 0);
  });
});

describe('rpc', () => {
  test('calls go both ways and errors keep their code, message and details', async () => {
    const hostCalls: string[] = [];
    const { server, controlAddress } = await startServer({
      handleRequest: async (hostId, method, params) => {
        if (method === 'vault.fail') throw new HavenError('forbidden', 'no', { hostId });
        return { hostId, method, params };
      },
    });
    const { client } = startClient(controlAddress, {
      handleRequest: async (method, params) => {
        hostCalls.push(method);
        if (method === 'disk.attach') {
          throw new HavenError('conflict', "disk 'd0' is already attached", {
            diskId: 'd0',
            state: 'attached',
          });
        }
        if (method === 'crash') throw new TypeError('boom');
        return { pong: params };
      },
    });
    await waitFor('connection', () => server.isConnected('h1') && client.connected);

    assert.deepEqual(await server.call('h1', 'host.ping', { n: 1 }), { pong: { n: 1 } });
    await assert.rejects(server.call('h1', 'disk.attach', {}), (error: unknown) => {
      assert.ok(error instanceof HavenError);
      assert.equal(error.code, 'conflict');
      assert.equal(error.status, 409);
      assert.equal(error.message, "disk 'd0' is already attached");
      assert.deepEqual(error.details, { diskId: 'd0', state: 'attached' });
      return true;
    });
    await assert.rejects(server.call('h1', 'crash', {}), isHavenError('internal', /boom/));
    assert.deepEqual(hostCalls, ['host.ping', 'disk.attach', 'crash']);

    assert.deepEqual(await client.call('vault.echo', [1, 2]), {
      hostId: 'h1',
      method: 'vault.echo',
      params: [1, 2],
    });
    await assert.rejects(client.call('vault.fail', null), isHavenError('forbidden', /^no$/));
  });

  test('a call that gets no answer times out as unreachable', async () => {
    const { server, controlAddress } = await startServer();
    const { client } = startClient(controlAddress, { handleRequest: () => new Promise(() => {}) });
    await waitFor('connection', () => server.isConnected('h1') && client.connected);
    const started = Date.now();
    await assert.rejects(
      server.call('h1', 'hypervisor.start', {}, { timeoutMs: 100 }),
      isHavenError('unreachable', /did not answer 'hypervisor.start' within 100 ms/),
    );
    assert.ok(Date.now() - started < 1000);
    // The session survives a timeout.
    assert.equal(server.isConnected('h1'), true);
  });

  test('calling a host that is not connected fails at once', async () => {
    const { server } = await startServer();
    await assert.rejects(
      server.call('h2', 'host.ping', {}),
      isHavenError('unreachable', /'h2' is not connected/),
    );
  });

  test('pending calls fail as unreachable when the host socket is destroyed', async () => {
    const rec = recorder();
    const { server, controlAddress } = await startServer({ events: rec.events });
    let called = false;
    const { client } = startClient(controlAddress, {
      handleRequest: () => {
        called = true;
        return new Promise(() => {});
      },
    });
    await waitFor('connection', () => server.isConnected('h1'));
    const pending = server.call('h1', 'replication.start', {}, { timeoutMs: 10_000 });
    await waitFor('call delivered', () => called);
    const failed = assert.rejects(pending, isHavenError('unreachable', /'h1' disconnected/));
    await client.stop();
    await failed;
    await waitFor('disconnect event', () => rec.count('disconnected:h1') === 1);
    assert.equal(server.isConnected('h1'), false);
  });
});

describe('reconnection', () => {
  test('the host reconnects after the vault restarts with the same identity', async () => {
    const first = await startServer();
    const { client, connects } = startClient(first.controlAddress, {
      handleRequest: async () => 'hello',
    });
    await waitFor('connection', () => first.server.isConnected('h1'));
    await first.server.close();
    await waitFor('client noticed', () => !client.connected);
    const second = await startServer({}, first.address.port);
    await waitFor('reconnection', () => second.server.isConnected('h1') && connects() === 2);
    assert.equal(await second.server.call('h1', 'any', null), 'hello');
  });

  test('the host reconnects after the vault drops its connection and re-sends what it reports on connect', async () => {
    const rec = recorder();
    const { server, controlAddress } = await startServer({ events: rec.events });
    const { client } = startClient(controlAddress, {
      onConnected() {
        client.notify('inventory', { machines: ['vm1'] });
      },
    });
    await waitFor('inventory', () => rec.count('inventory:h1:{"machines":["vm1"]}') === 1);
    assert.equal(server.disconnect('h1', 'test'), true);
    await waitFor('inventory again', () => rec.count('inventory:h1:{"machines":["vm1"]}') === 2);
    assert.equal(rec.count('connected:h1'), 2);
    assert.equal(rec.count('disconnected:h1'), 1);
    client.notify('event', { kind: 'disk-error' });
    await waitFor('event', () => rec.log.includes('event:h1:{"kind":"disk-error"}'));
  });
});

describe('liveness', () => {
  test('a host that stops heartbeating is unreachable, and reachable again when it resumes', async () => {
    const rec = recorder();
    const { server, address } = await startServer({
      events: rec.events,
      heartbeatIntervalMs: 50,
      missedHeartbeats: 3,
    });
    const peer = await rawPeer(address.port);
    // Taken before the hello, so it is no later than the server's own "last seen".
    const connectedAt = Date.now();
    const welcome = await peer.hello('h1');
    assert.equal(welcome?.heartbeatIntervalMs, 50);
    // Connected but silent: a hung agent.
    await waitFor('unreachable', () => rec.count('unreachable:h1') === 1);
    assert.ok(Date.now() - connectedAt >= 150, 'not before 3 missed heartbeats');
    assert.equal(server.isUnreachable('h1'), true);
    peer.send({ method: 'heartbeat', params: {} });
    await waitFor('reachable', () => rec.count('reachable:h1') === 1);
    assert.equal(server.isUnreachable('h1'), false);
    assert.equal(rec.count('unreachable:h1'), 1, 'reported once per outage');
  });

  test('a host whose agent stops is unreachable until it reconnects; an expected host that never comes is too', async () => {
    const rec = recorder();
    const { server, controlAddress } = await startServer({
      events: rec.events,
      heartbeatIntervalMs: 100,
      missedHeartbeats: 3,
    });
    server.expectHost('h2');
    const { client } = startClient(controlAddress);
    await waitFor('connection', () => server.isConnected('h1'));
    await waitFor('h2 unreachable', () => rec.count('unreachable:h2') === 1);
    assert.equal(rec.count('unreachable:h1'), 0, 'heartbeats keep h1 reachable');
    await client.stop();
    await waitFor('h1 unreachable', () => rec.count('unreachable:h1') === 1);
    client.start();
    await waitFor('h1 reachable', () => rec.count('reachable:h1') === 1);
  });
});

describe('hostile input', () => {
  test('an oversize frame before authentication is refused and the server keeps serving', async () => {
    const rec = recorder();
    const { server, address, controlAddress } = await startServer({ events: rec.events });
    const peer = await rawPeer(address.port);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(100 * 1024 * 1024);
    peer.socket.write(header);
    await waitFor('close', peer.isClosed);
    assert.match(String(peer.frames[1]?.reason), /exceeds the 65536-byte limit/);
    startClient(controlAddress);
    await waitFor('a good host still connects', () => server.isConnected('h1'));
  });

  test('garbage and oversize frames after authentication close only that connection', async () => {
    const rec = recorder();
    const { server, address } = await startServer({ events: rec.events, maxFrameBytes: 1024 });
    const garbage = await rawPeer(address.port);
    await garbage.hello('h1');
    const payload = Buffer.from('this is not json');
    const header = Buffer.alloc(4);
    header.writeUInt32BE(payload.length);
    garbage.socket.write(Buffer.concat([header, payload]));
    await waitFor('garbage peer closed', garbage.isClosed);

    const oversize = await rawPeer(address.port);
    await oversize.hello('h1');
    oversize.send({ method: 'inventory', params: 'x'.repeat(2000) });
    await waitFor('oversize peer closed', oversize.isClosed);

    const wrongShape = await rawPeer(address.port);
    await wrongShape.hello('h1');
    wrongShape.send([1, 2, 3]);
    await waitFor('wrong-shape peer closed', wrongShape.isClosed);

    assert.ok(rec.log.some((e) => /rejected:h1:.*not valid JSON/.test(e)));
    assert.ok(rec.log.some((e) => /rejected:h1:.*exceeds the 1024-byte limit/.test(e)));
    assert.ok(rec.log.some((e) => /rejected:h1:.*not an object/.test(e)));
    const good = await rawPeer(address.port);
    assert.equal((await good.hello('h1'))?.type, 'welcome');
    assert.equal(server.isConnected('h1'), true);
  });

  test('bytes that are not TLS do not crash the server', async () => {
    const rec = recorder();
    const { server, address } = await startServer({ events: rec.events });
    await new Promise<void>((resolve) => {
      const socket = tcpConnect(address.port, '127.0.0.1', () => socket.end('GET / HTTP/1.1\r\n\r\n'));
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
    });
    await waitFor('tls rejection', () =>
      rec.log.some((e) => e.startsWith('rejected:null:TLS handshake failed')),
    );
    const good = await rawPeer(address.port);
    assert.equal((await good.hello('h1'))?.type, 'welcome');
    assert.equal(server.isConnected('h1'), true);
  });
});
