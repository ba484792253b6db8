/**
 * Onboarding physical servers against a real vault with its two real hosts
 * (in process): the REST routes, and the redemption of a server's enrolment
 * token by a host over its real control channel. The host side of servers is
 * not part of this test: `servers.endpoint` is a double here.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Embedded, startEmbedded } from '../../app/start-embedded.ts';
import type { Host, Machine, ServerLinkSnapshot } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { ServerEndpoint, ServerEnrolment } from '../../host/host-services.ts';
import { answerHostCalls, embeddedApi } from '../../testing/embedded-api.ts';
import { SAMPLE_SERVER_ENDPOINT } from '../../testing/sample-machine.ts';
import { until } from '../../testing/until.ts';
import type { ServerEnrolmentIssued } from '../../vault/servers/index.ts';
import { formatEnrolmentToken, hashSecret, SERVER_ENROLMENT_TOKEN_PREFIX } from '../../vault/token-secret.ts';

const ENDPOINT = SAMPLE_SERVER_ENDPOINT;
const MiB = 1 << 20;

let dir: string;
let up: Embedded;
const api = embeddedApi(() => up);
let hostIds: Record<string, string>;
/** What the double of the hosts' `servers.endpoint` answers (or throws). */
let endpoint: () => Promise<ServerEndpoint | null> = async () => ENDPOINT;
/** What the double of the hosts' `servers.status` answers: a server running mirrored. */
const serverLink: ServerLinkSnapshot = {
  state: 'in-sync',
  legs: [
    {
      diskId: 'disk0',
      sizeBytes: 64 * MiB,
      connected: true,
      md: 'in-sync',
      syncedBytes: null,
      pointsAllowed: true,
      lastWriteAt: null,
    },
  ],
  agent: null,
  problem: null,
};

type Added = { machine: Machine } & ServerEnrolmentIssued;
type Refusal = { error: { code: string; message: string; details: Record<string, unknown> } };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-servers-'));
  up = await startEmbedded({ dataDir: dir, port: 0, demo: false });
  await until('both hosts connected', async () => {
    const { body } = await api<{ hosts: Host[] }>('GET', '/hosts');
    return body.hosts.length === 2 && body.hosts.every((h) => h.status === 'connected');
  });
  const { body } = await api<{ hosts: Host[] }>('GET', '/hosts');
  hostIds = Object.fromEntries(body.hosts.map((h) => [h.name, h.id]));
  answerHostCalls(up, (method) =>
    method === 'servers.endpoint' ? endpoint() : method === 'servers.status' ? serverLink : undefined,
  );
});
after(async () => {
  await up?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function tokenFor(role: 'viewer' | 'operator'): Promise<string> {
  const created = await api<{ token: string }>('POST', '/tokens', { name: `servers-${role}`, role });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  return created.body.token;
}

async function as<T>(token: string, method: string, path: string, body?: unknown) {
  const response = await up.vault.app.request(`/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as T };
}

const request = (overrides: Record<string, unknown> = {}) => ({
  name: 'db-01',
  siteId: 'primary',
  hostId: 'primary',
  disks: [
    { id: 'disk0', device: '/dev/sda', sizeBytes: 64 * MiB },
    { id: 'data', device: '/dev/disk/by-id/ata-DATA', sizeBytes: 16 * MiB },
  ],
  recoverySettings: { targetName: 'db-01', cpus: 2, memoryMiB: 2048, nics: [{ network: 'lan' }] },
  ...overrides,
});

/** A host redeeming a server's token over its own control channel, as its server agent endpoint will. */
function redeem(hostName: string, token: string): Promise<ServerEnrolment> {
  const host = up.hosts.find((h) => h.agent.identity.name === hostName)!;
  return host.agent.client.call('servers.redeemEnrolment', { token }) as Promise<ServerEnrolment>;
}

async function refusedWith(promise: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof HavenError, String(error));
    assert.equal(error.code, code, error.message);
    assert.match(error.message, message);
    return true;
  });
}

describe('servers API', () => {
  it('refuses bad requests at the request, before anything is stored', async () => {
    const cases: Array<[Record<string, unknown>, number, RegExp]> = [
      [{ disks: [{ id: 'disk0', device: 'sda', sizeBytes: MiB }] }, 400, /disks\.0\.device/],
      [{ disks: [{ id: 'disk0', device: '/dev/../etc/passwd', sizeBytes: MiB }] }, 400, /disks\.0\.device/],
      [{ disks: [{ id: 'disk0', device: '/dev/sda', sizeBytes: 1000 }] }, 400, /disks\.0\.sizeBytes/],
      [{ disks: [{ id: 'disk 0', device: '/dev/sda', sizeBytes: MiB }] }, 400, /disks\.0\.id/],
      [
        {
          disks: [
            { id: 'disk0', device: '/dev/sda', sizeBytes: MiB },
            { id: 'disk0', device: '/dev/sdb', sizeBytes: MiB },
          ],
        },
        400,
        /used twice/,
      ],
      [{ disks: [] }, 400, /disks/],
      [{ siteId: 'nowhere' }, 400, /site 'nowhere' does not exist/],
      [{ hostId: 'recovery' }, 400, /site 'primary' has no host 'recovery'/],
      [{ writeBehind: 0 }, 400, /writeBehind/],
    ];
    for (const [overrides, status, message] of cases) {
      const answer = await api<Refusal>('POST', '/servers', request(overrides));
      assert.equal(answer.status, status, `${JSON.stringify(overrides)}: ${JSON.stringify(answer.body)}`);
      assert.match(answer.body.error.message, message);
    }
    endpoint = async () => {
      throw new HavenError('not_available', "the host does not answer 'servers.endpoint'");
    };
    const old = await api<Refusal>('POST', '/servers', request());
    assert.equal(old.status, 409, JSON.stringify(old.body));
    assert.match(old.body.error.message, /host 'primary' does not serve physical servers.*servers\.endpoint/);
    endpoint = async () => null;
    const none = await api<Refusal>('POST', '/servers', request());
    assert.match(
      none.body.error.message,
      /host 'primary' does not serve physical servers: .*no server endpoint/,
    );
    endpoint = async () => ENDPOINT;
    assert.equal((await api<{ servers: Machine[] }>('GET', '/servers')).body.servers.length, 0);
  });

  it('a viewer sees servers but may not add them; an operator adds one and gets its token once', async () => {
    const viewer = await tokenFor('viewer');
    const operator = await tokenFor('operator');
    assert.equal((await as<Refusal>(viewer, 'POST', '/servers', request())).status, 403);

    const added = await as<Added>(operator, 'POST', '/servers', request());
    assert.equal(added.status, 201, JSON.stringify(added.body));
    const { machine, token, commands, expiresAt, writeOrdering } = added.body;
    assert.equal(machine.state, 'unprotected');
    assert.equal(machine.primaryHostId, hostIds.primary);
    assert.equal(machine.activeHostId, hostIds.primary);
    assert.deepEqual(machine.server, {
      writeBehind: null,
      nbdTimeoutSeconds: 30,
      enrolledAt: null,
      bmc: null,
    });
    assert.deepEqual(
      machine.disks.map((d) => [d.id, d.serverDevice, d.source, d.sizeBytes]),
      [
        ['disk0', '/dev/sda', '/dev/sda', 64 * MiB],
        ['data', '/dev/disk/by-id/ata-DATA', '/dev/disk/by-id/ata-DATA', 16 * MiB],
      ],
    );
    assert.equal(machine.recoverySettings.cpus, 2);
    assert.match(token, /^hvs_/);
    const hours = (Date.parse(expiresAt) - Date.now()) / 3_600_000;
    assert.ok(hours > 23.9 && hours <= 24, `expires in 24 h, not ${hours}`);
    assert.match(writeOrdering, /^synchronous/);
    const script = commands.join('\n');
    assert.match(
      script,
      /cat > \/etc\/haven\/server-ca\.pem <<'HAVEN_SERVER_CA'\n-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\nHAVEN_SERVER_CA\n/,
    );
    assert.ok(
      commands.includes(
        `haven-server-agent enrol --agent 10.0.1.11:8444 --tls-hostname primary.servers.haven --ca-file /etc/haven/server-ca.pem --token ${token}`,
      ),
      script,
    );
    assert.deepEqual(commands.slice(-2), ['haven-server-agent setup', 'haven-server-agent run']);

    const listed = await as<{ servers: Machine[] }>(viewer, 'GET', '/servers');
    assert.equal(listed.status, 200);
    assert.deepEqual(
      listed.body.servers.map((m) => m.name),
      ['db-01'],
    );
    const shown = await as<Machine>(viewer, 'GET', '/machines/db-01');
    assert.ok(
      !JSON.stringify([listed.body, shown.body]).includes(token.split('.')[1]!),
      'the token is shown once',
    );

    const again = await as<Refusal>(operator, 'POST', '/servers', request());
    assert.equal(again.status, 409);
    assert.match(again.body.error.message, /'db-01' already exists/);

    const behind = await as<Added>(
      operator,
      'POST',
      '/servers',
      request({ name: 'db-02', writeBehind: 256 }),
    );
    assert.equal(behind.status, 201, JSON.stringify(behind.body));
    assert.equal(behind.body.machine.server?.writeBehind, 256);
    assert.match(behind.body.writeOrdering, /write-behind \(up to 256 writes\).*may lack up to 256 writes/);

    const vm = await api<Refusal>('POST', '/machines', {
      name: 'plain-vm',
      hostId: 'primary',
      disks: [{ id: 'disk0', sizeBytes: MiB }],
    });
    assert.equal(vm.status, 201, JSON.stringify(vm.body));
    const notServer = await as<Refusal>(operator, 'POST', '/servers/plain-vm/enrolment', {});
    assert.equal(notServer.status, 409);
    assert.match(notServer.body.error.message, /'plain-vm' is a VM, not a physical server/);
    assert.equal((await as<Refusal>(viewer, 'POST', '/servers/db-01/enrolment', {})).status, 403);

    // No hypervisor at its primary site runs it: what would drive one is refused, naming the server and its kind.
    for (const [path, body] of [
      ['start', {}],
      ['stop', {}],
      ['pause-protection', {}],
    ] as const) {
      const refused = await as<Refusal>(operator, 'POST', `/machines/db-01/${path}`, body);
      assert.equal(refused.status, 409, `${path}: ${JSON.stringify(refused.body)}`);
      assert.match(
        refused.body.error.message,
        new RegExp(`'db-01' is a physical server \\(kind server, unprotected\\).*: ${path} does not apply`),
      );
    }
  });

  it("a server's BMC: its password is stored apart and never shown; an operator changes or removes it, a viewer may not", async () => {
    const viewer = await tokenFor('viewer');
    const operator = await tokenFor('operator');
    const password = 'pw-only-the-host-sees';
    const bmc = { protocol: 'ipmi', address: 'fd00::21', user: 'haven', password };
    const added = await as<Added>(operator, 'POST', '/servers', request({ name: 'bmc-01', bmc }));
    assert.equal(added.status, 201, JSON.stringify(added.body));
    const id = added.body.machine.id;
    const where = { protocol: 'ipmi', address: 'fd00::21', port: 623, user: 'haven', cipherSuite: null };
    assert.deepEqual(added.body.machine.server?.bmc, where);
    const { store } = up.vault.context;
    assert.equal(await store.serverBmcPasswords.get(id), password);
    for (const path of [`/machines/${id}`, '/servers', '/machines']) {
      const shown = await as<unknown>(viewer, 'GET', path);
      assert.equal(shown.status, 200);
      assert.ok(!JSON.stringify(shown.body).includes(password), `${path} never shows the password`);
    }
    assert.ok(
      !JSON.stringify(await store.machines.get(id)).includes(password),
      'nor does the machine record',
    );

    const change = {
      bmc: { ...bmc, address: 'bmc-01.oob', port: 6230, cipherSuite: 3, password: 'new-one' },
    };
    assert.equal((await as<Refusal>(viewer, 'PATCH', `/servers/${id}`, change)).status, 403);
    const badUser = await as<Refusal>(operator, 'PATCH', `/servers/${id}`, { bmc: { ...bmc, user: '-x' } });
    assert.equal(badUser.status, 400);
    assert.match(badUser.body.error.message, /bmc\.user/);
    const changed = await as<Machine>(operator, 'PATCH', `/servers/${id}`, change);
    assert.equal(changed.status, 200, JSON.stringify(changed.body));
    assert.deepEqual(changed.body.server?.bmc, {
      ...where,
      address: 'bmc-01.oob',
      port: 6230,
      cipherSuite: 3,
    });
    assert.equal(await store.serverBmcPasswords.get(id), 'new-one');
    const removed = await as<Machine>(operator, 'PATCH', `/servers/${id}`, { bmc: null });
    assert.equal(removed.body.server?.bmc, null);
    assert.equal(await store.serverBmcPasswords.get(id), undefined, 'its password goes with it');

    const vm = await as<Machine>(operator, 'POST', '/machines', {
      name: 'vm-no-bmc',
      hostId: 'primary',
      osFamily: 'linux',
      disks: [{ id: 'disk0', sizeBytes: MiB }],
    });
    assert.equal(vm.status, 201, JSON.stringify(vm.body));
    const notServer = await as<Refusal>(operator, 'PATCH', `/servers/${vm.body.id}`, change);
    assert.equal(notServer.status, 409);
    assert.match(
      notServer.body.error.message,
      /Machine 'vm-no-bmc' is a VM, not a physical server: only servers have a BMC/,
    );
  });

  it('a host redeems a token once: a new token kills the old one, the wrong host and an expired token are refused, one of two concurrent redeemers wins', async () => {
    const first = await api<ServerEnrolmentIssued>('POST', '/servers/db-01/enrolment', {});
    assert.equal(first.status, 201, JSON.stringify(first.body));
    const second = await api<ServerEnrolmentIssued>('POST', '/servers/db-01/enrolment', {});
    assert.notEqual(first.body.token, second.body.token);
    await refusedWith(
      redeem('primary', first.body.token),
      'unauthenticated',
      /server 'db-01' was replaced by a newer token/,
    );
    await refusedWith(
      redeem('recovery', second.body.token),
      'forbidden',
      /server 'db-01' was presented through host 'recovery', but the server's primary host is 'primary'/,
    );
    await refusedWith(
      redeem('primary', 'hvs_nope.secret'),
      'unauthenticated',
      /Unknown server enrolment token/,
    );
    await refusedWith(redeem('primary', `${second.body.token}x`), 'unauthenticated', /Unknown/);

    const results = await Promise.allSettled([
      redeem('primary', second.body.token),
      redeem('primary', second.body.token),
    ]);
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.equal(won.length, 1, JSON.stringify(results));
    const lost = results.find((r) => r.status === 'rejected')!;
    assert.match(String(lost.reason), /server 'db-01' was already used at/);
    const enrolment = won[0]!.value;
    const machine = (await api<Machine>('GET', '/machines/db-01')).body;
    assert.deepEqual(enrolment, {
      machineId: machine.id,
      name: 'db-01',
      disks: [
        { diskId: 'disk0', device: '/dev/sda', sizeBytes: 64 * MiB },
        { diskId: 'data', device: '/dev/disk/by-id/ata-DATA', sizeBytes: 16 * MiB },
      ],
      writeBehind: null,
      nbdTimeoutSeconds: 30,
    });
    assert.ok(machine.server?.enrolledAt, 'the vault records when the server enrolled');

    const past = new Date(Date.now() - 1000).toISOString();
    await up.vault.context.store.serverEnrolments.issue({
      id: 'expired1',
      secretHash: hashSecret('s3cret'),
      machineId: machine.id,
      createdBy: 'test',
      createdAt: past,
      expiresAt: past,
      usedAt: null,
      replacedAt: null,
    });
    await refusedWith(
      redeem('primary', formatEnrolmentToken('expired1', 's3cret', SERVER_ENROLMENT_TOKEN_PREFIX)),
      'unauthenticated',
      /server 'db-01' expired at/,
    );
    await refusedWith(
      up.hosts[0]!.agent.client.call('machines.delete', {}) as Promise<unknown>,
      'not_available',
      /does not answer 'machines\.delete'/,
    );
  });

  it('refuses to reprotect a server failed over its primary host sees running, at the request', async () => {
    const added = await api<Added>('POST', '/servers', request({ name: 'web-09' }));
    assert.equal(added.status, 201, JSON.stringify(added.body));
    const { store } = up.vault.context;
    const machine = (await store.machines.get(added.body.machine.id))!;
    // As a committed failover left it: running from a view at the recovery host.
    await store.machines.update({
      ...machine,
      recoveryHostId: hostIds.recovery!,
      activeHostId: hostIds.recovery!,
      runtime: {
        ...machine.runtime,
        failover: {
          hostId: hostIds.recovery!,
          viewId: 'v1',
          vmName: 'web-09',
          pointId: 'p1',
          pointTime: new Date().toISOString(),
          disks: [],
          startedAt: new Date().toISOString(),
        },
      },
    });
    assert.ok(
      await store.machines.transition(
        machine.id,
        'unprotected',
        'failover-committed',
        null,
        new Date().toISOString(),
      ),
    );
    const refused = await api<Refusal>('POST', '/machines/web-09/reprotect', {});
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, 'conflict', refused.body.error.message);
    assert.match(
      refused.body.error.message,
      /^physical server 'web-09' is not off at the primary site: its host sees its NBD leg disk0 connected and its agent reporting \(in-sync\)\. .*power the server off .*then reprotect again$/,
    );
    assert.equal((await store.machines.get(machine.id))?.state, 'failover-committed', 'nothing started');
  });
});
