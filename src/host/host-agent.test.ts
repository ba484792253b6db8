/**
 * The host agent against a real ControlServer over TLS on 127.0.0.1, enrolled
 * through a stand-in for the vault's enrolment endpoint (the real one is the
 * REST API's; this one follows the agreed request/response shape).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  ControlServer,
  createHostCredential,
  generateVaultIdentity,
  type VaultIdentity,
} from '../control/index.ts';
import { HavenError } from '../errors/index.ts';
import { postToServerAgentEndpoint, serverAgentKey } from '../testing/server-agent.fixture.ts';
import {
  agentVersion,
  enrol,
  type HostAgent,
  type HostInventory,
  hostMethods,
  loadHostIdentity,
  notAvailableServices,
  remoteHostServices,
  type ServerEnrolment,
  startHost,
  startHostAgent,
} from './index.ts';

let identity: VaultIdentity;
let server: ControlServer;
let controlAddress: string;
let http: Server;
let apiUrl: string;
const credentialHashes = new Map<string, string>();
const enrolments: Array<Record<string, unknown>> = [];
const inventories: Array<{ hostId: string; inventory: HostInventory }> = [];
const events: Array<{ hostId: string; event: unknown }> = [];
const cleanups: Array<() => Promise<unknown> | unknown> = [];
const redeemedServerTokens = new Set<string>();

before(async () => {
  identity = await generateVaultIdentity();
  server = new ControlServer({
    keyPem: identity.keyPem,
    certPem: identity.certPem,
    credentialHash: async (hostId) => credentialHashes.get(hostId),
    // The vault's side of a server's enrolment (its real handler is the vault's): 'server-token' once.
    handleRequest: async (hostId, method, params) => {
      const token = (params as { token?: string }).token;
      if (method !== 'servers.redeemEnrolment') throw new HavenError('not_available', `no '${method}' here`);
      if (token !== 'server-token' || redeemedServerTokens.has(token)) {
        throw new HavenError('unauthenticated', 'enrolment token is unknown, used or expired');
      }
      redeemedServerTokens.add(token);
      return {
        machineId: `server-of-${hostId}`,
        name: 'web',
        disks: [{ diskId: 'disk0', device: '/dev/sda', sizeBytes: 4 << 20 }],
        writeBehind: 64,
        nbdTimeoutSeconds: 20,
      } satisfies ServerEnrolment;
    },
    events: {
      onHostInventory: (hostId, inventory) =>
        void inventories.push({ hostId, inventory: inventory as HostInventory }),
      onHostEvent: (hostId, event) => void events.push({ hostId, event }),
    },
  });
  controlAddress = `127.0.0.1:${(await server.listen()).port}`;

  // The agreed enrolment endpoint: token 'good-*' is valid once.
  const used = new Set<string>();
  http = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => {
      body += chunk;
    });
    request.on('end', () => {
      const input = JSON.parse(body) as Record<string, unknown>;
      const token = String(input.token);
      response.setHeader('content-type', 'application/json');
      if (request.url !== '/api/v1/hosts/enrol' || request.method !== 'POST') {
        response.writeHead(404).end('{}');
        return;
      }
      if (!token.startsWith('good-') || used.has(token)) {
        response.writeHead(401).end(
          JSON.stringify({
            error: {
              code: 'unauthenticated',
              message: 'enrolment token is unknown, used or expired',
              details: {},
            },
          }),
        );
        return;
      }
      used.add(token);
      enrolments.push(input);
      const hostId = `host-${enrolments.length}`;
      const credential = createHostCredential();
      credentialHashes.set(hostId, credential.credentialHash);
      response.end(
        JSON.stringify({
          hostId,
          hostSecret: credential.hostSecret,
          controlAddress,
          vaultFingerprint: identity.fingerprint,
        }),
      );
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  apiUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
});

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await server.close();
  await new Promise((resolve) => http.close(resolve));
});

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'haven-host-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function agent(options: Parameters<typeof startHostAgent>[0]): Promise<HostAgent> {
  const started = await startHostAgent({
    log: () => {},
    reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
    ...options,
  });
  cleanups.push(() => started.stop());
  return started;
}

test('a new host enrols, keeps its identity in host.json (0600) and connects', async () => {
  const dir = await dataDir();
  const host = await agent({
    dataDir: dir,
    enrol: { apiUrl, token: 'good-1', name: 'kvm-a', site: 'primary' },
    capabilities: ['hypervisor:qemu'],
    replicationAddress: '127.0.0.1:9443',
  });
  const hostId = host.identity.hostId;
  assert.deepEqual(enrolments.at(-1), {
    token: 'good-1',
    name: 'kvm-a',
    site: 'primary',
    storageFolders: [],
    capabilities: ['hypervisor:qemu'],
    version: agentVersion(),
    replicationAddress: '127.0.0.1:9443',
  });
  const file = join(dir, 'host.json');
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  const saved = JSON.parse(await readFile(file, 'utf8'));
  assert.equal(saved.hostId, hostId);
  assert.equal(saved.vaultFingerprint, identity.fingerprint);
  assert.equal(saved.controlAddress, controlAddress);
  assert.deepEqual(await loadHostIdentity(dir), saved);

  await waitFor('connection', () => server.isConnected(hostId));
  await waitFor('inventory', () => inventories.some((i) => i.hostId === hostId));
  const { inventory } = inventories.find((i) => i.hostId === hostId)!;
  assert.equal(inventory.version, agentVersion());
  assert.deepEqual(inventory.capabilities, ['hypervisor:qemu']);
  assert.equal(inventory.machines, null, 'no hypervisor yet');
  assert.equal(inventory.disks, null, 'no disk service yet');

  const remote = remoteHostServices((method, params) => server.call(hostId, method, params));
  const info = await remote.host.info();
  assert.equal(info.dataDir, dir);
  assert.equal(info.replicationAddress, '127.0.0.1:9443');
  assert.ok(info.dataDirFreeBytes > 0 && info.dataDirFreeBytes <= info.dataDirTotalBytes);
  assert.ok(Math.abs(Date.parse((await remote.host.ping()).time) - Date.now()) < 5000);

  host.sendEvent({ kind: 'disk-error', diskId: 'd0' });
  await waitFor('event', () => events.some((e) => e.hostId === hostId));
  assert.equal((events.at(-1)!.event as { kind: string }).kind, 'disk-error');
});

test('operations without a data path answer not_available, naming the operation and what the host lacks', async () => {
  const host = await agent({
    dataDir: await dataDir(),
    enrol: { apiUrl, token: 'good-2', name: 'b', site: 's' },
  });
  const hostId = host.identity.hostId;
  await waitFor('connection', () => server.isConnected(hostId));
  const remote = remoteHostServices((method, params) => server.call(hostId, method, params));
  await assert.rejects(remote.disk.attach({ machineId: 'm', diskId: 'd0', source: '/x', sizeBytes: 1 }), {
    code: 'not_available',
    message: 'disk.attach is not available: this host runs no disk service',
  });
  const methods = hostMethods().filter((m) => !m.startsWith('host.'));
  assert.equal(methods.length, 55);
  for (const method of methods) {
    await assert.rejects(server.call(hostId, method, {}), (error: unknown) => {
      assert.ok(error instanceof HavenError);
      assert.equal(error.code, 'not_available', method);
      assert.match(
        error.message,
        new RegExp(`^${method.replace('.', '\\.')} is not available: this host .*`),
      );
      return true;
    });
  }
  for (const method of ['disk.constructor', 'host.__proto__', 'toString', 'replica.', 'nope.info']) {
    await assert.rejects(server.call(hostId, method, {}), {
      code: 'not_available',
      message: `this host agent has no operation '${method}'`,
    });
  }
});

test('implemented services are served and reported in the inventory', async () => {
  const started: string[] = [];
  const host = await agent({
    dataDir: await dataDir(),
    enrol: { apiUrl, token: 'good-3', name: 'c', site: 's' },
    services: {
      hypervisor: {
        ...notAvailableServices().hypervisor,
        list: async () => [{ name: 'vm1', state: 'shut-off' }],
        start: async ({ name }) => {
          started.push(name);
          return { name, state: 'running' };
        },
      },
    },
  });
  const hostId = host.identity.hostId;
  await waitFor('inventory', () => inventories.some((i) => i.hostId === hostId));
  assert.deepEqual(inventories.find((i) => i.hostId === hostId)?.inventory.machines, [
    { name: 'vm1', state: 'shut-off' },
  ]);
  const remote = remoteHostServices((method, params) => server.call(hostId, method, params));
  assert.deepEqual(await remote.hypervisor.start({ name: 'vm1' }), { name: 'vm1', state: 'running' });
  assert.deepEqual(started, ['vm1']);
  await assert.rejects(remote.hypervisor.fence({ name: 'vm1' }), { code: 'not_available' });
});

test('a restarted agent reconnects from host.json without enrolling again', async () => {
  const dir = await dataDir();
  const first = await agent({ dataDir: dir, enrol: { apiUrl, token: 'good-4', name: 'd', site: 's' } });
  const hostId = first.identity.hostId;
  await waitFor('connection', () => server.isConnected(hostId));
  await first.stop();
  await waitFor('disconnection', () => !server.isConnected(hostId));
  const count = enrolments.length;
  // The token is spent: a second enrolment would fail, so this proves host.json is used.
  const second = await agent({ dataDir: dir, enrol: { apiUrl, token: 'good-4', name: 'd', site: 's' } });
  assert.equal(second.identity.hostId, hostId);
  await waitFor('reconnection', () => server.isConnected(hostId));
  assert.equal(enrolments.length, count);
});

test('enrolment failures are clear and leave no host.json', async () => {
  const dir = await dataDir();
  await assert.rejects(enrol({ apiUrl, token: 'bad', name: 'e', site: 's', dataDir: dir }), {
    code: 'unauthenticated',
    message: 'enrolment refused by the vault: enrolment token is unknown, used or expired',
  });
  assert.equal(await loadHostIdentity(dir), undefined);
  await assert.rejects(
    enrol({ apiUrl: 'http://127.0.0.1:1', token: 'good-x', name: 'e', site: 's', dataDir: dir }),
    { code: 'unreachable' },
  );
  await assert.rejects(
    enrol({ apiUrl, token: 'good-5', name: 'e', site: 's', dataDir: dir, expectedFingerprint: 'AA:BB' }),
    { code: 'unauthenticated' },
  );
  assert.equal(await loadHostIdentity(dir), undefined);
  await enrol({ apiUrl, token: 'good-6', name: 'e', site: 's', dataDir: dir });
  await assert.rejects(enrol({ apiUrl, token: 'good-7', name: 'e', site: 's', dataDir: dir }), {
    code: 'conflict',
  });
});

test('an agent without host.json or an enrolment token refuses to start', async () => {
  const dir = await dataDir();
  await assert.rejects(startHostAgent({ dataDir: dir, log: () => {} }), {
    code: 'not_found',
    message: new RegExp(`${dir}/host.json does not exist: enrol this host first`),
  });
});

test('a damaged host.json is reported, not half-used', async () => {
  const dir = await dataDir();
  await writeFile(join(dir, 'host.json'), '{"hostId": "x"}');
  await assert.rejects(loadHostIdentity(dir), { code: 'validation_failed', message: /has no valid 'name'/ });
  await writeFile(join(dir, 'host.json'), 'not json');
  await assert.rejects(loadHostIdentity(dir), { code: 'validation_failed', message: /not valid JSON/ });
});

test('a host started to serve servers reports its endpoint and enrols a server through the vault', async () => {
  const dir = await dataDir();
  const host = await startHost({
    dataDir: dir,
    enrol: { apiUrl, token: 'good-servers', name: 'srv', site: 'primary' },
    replicationListen: { host: '127.0.0.1', port: 0 },
    viewAccessListen: null,
    servers: {
      listen: { host: '127.0.0.1', nbdPort: 0, agentPort: 0 },
      advertise: { address: '192.0.2.10', agentPort: 8443 },
      tlsHostname: 'srv.haven.test',
    },
    log: () => {},
  });
  cleanups.push(() => host.stop());
  const hostId = host.agent.identity.hostId;
  await waitFor('connection', () => server.isConnected(hostId));
  const remote = remoteHostServices((method, params) => server.call(hostId, method, params));
  const info = await remote.host.info();
  assert.ok(info.capabilities.includes('server-link'));
  const bound = host.dataPath.diskService.addresses.servers!;
  assert.deepEqual(
    { ...info.serverEndpoint, caCertPem: undefined },
    {
      address: '192.0.2.10',
      nbdPort: bound.port,
      agentPort: 8443,
      tlsHostname: 'srv.haven.test',
      caCertPem: undefined,
    },
  );
  assert.deepEqual(await remote.servers.endpoint(), info.serverEndpoint);

  // The agent enrols at the bound port (what it is told is the advertised one, behind NAT).
  const agentPort = Number((await host.agent.services.servers.endpoint())?.agentPort);
  assert.equal(agentPort, 8443);
  const key = await serverAgentKey(join(dir, 'agent'));
  const listening = host.dataPath.serverListen!.agentPort;
  const enrol = () =>
    postToServerAgentEndpoint({
      port: listening,
      tlsHostname: 'srv.haven.test',
      caCertPem: info.serverEndpoint!.caCertPem,
      path: '/v1/enrol',
      body: key.csrPem,
      token: 'server-token',
    });
  const enrolled = await enrol();
  assert.equal(enrolled.status, 200, enrolled.body);
  assert.match(
    enrolled.body,
    /^machine server-of-.*\nname web\nnbd 192\.0\.2\.10 \d+ srv\.haven\.test\nagent 192\.0\.2\.10 8443\ntimeout 20\nwritebehind 64\n/,
  );
  const machineId = `server-of-${hostId}`;
  const status = await remote.replication.status({ machineId });
  assert.equal(status.server?.state, 'agent-silent');
  assert.deepEqual(
    status.server?.legs.map((l) => [l.diskId, l.connected, l.md]),
    [['disk0', false, 'unknown']],
  );
  const again = await enrol();
  assert.deepEqual(again, { status: 401, body: 'enrolment token is unknown, used or expired\n' });
});
