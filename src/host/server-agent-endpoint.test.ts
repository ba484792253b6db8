/**
 * The servers' agent endpoint with real peers: the host's server CA made by
 * openssl, a CSR made by openssl as the server agent makes it, node:https as
 * the agent (its client certificate the one the endpoint issued), a real
 * disk service whose server listener nbdinfo reaches over TLS. Only the
 * vault's answer to `servers.redeemEnrolment` is a stand-in.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdir, readdir, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DiskService } from '../disk/disk-service.ts';
import { HavenError } from '../errors/index.ts';
import { NbdClient } from '../nbd/nbd-client.ts';
import { run, scratchDir } from '../testing/nbd-test-fixture.ts';
import { postToServerAgentEndpoint, serverAgentKey } from '../testing/server-agent.fixture.ts';
import { hostDiskService } from './host-disk-service.ts';
import type { ServerEnrolment } from './host-services.ts';
import {
  MAX_AGENT_BODY_BYTES,
  type ServerAgentEndpoint,
  startServerAgentEndpoint,
} from './server-agent-endpoint.ts';
import { openServerCa, type ServerCa } from './server-ca.ts';
import { ServerLinks, type ServerLinksOptions } from './server-links.ts';

const TLS_HOSTNAME = 'primary.haven.test';
const ENROLMENT: ServerEnrolment = {
  machineId: 'web-01',
  name: 'web',
  disks: [{ diskId: 'disk0', device: '/dev/vda', sizeBytes: 8 << 20 }],
  writeBehind: null,
  nbdTimeoutSeconds: 30,
};

interface Answer {
  status: number;
  body: string;
}

describe('server agent endpoint', () => {
  let scratch: { path: string; remove: () => Promise<void> };
  let ca: ServerCa;
  let core: DiskService;
  let links: ServerLinks;
  let linksOptions: ServerLinksOptions;
  let endpoint: ServerAgentEndpoint;
  let client: { key: string; csr: string; cert: string | null; dir: string };
  const redeemed: string[] = [];

  const post = (
    path: string,
    body: string | Buffer,
    options: { token?: string; certificate?: boolean } = {},
  ): Promise<Answer> =>
    postToServerAgentEndpoint({
      port: endpoint.address.port,
      tlsHostname: TLS_HOSTNAME,
      caCertPem: ca.caCertPem,
      path,
      body,
      ...(options.token === undefined ? {} : { token: options.token }),
      ...(options.certificate && client.cert ? { client: { keyPem: client.key, certPem: client.cert } } : {}),
    });

  before(async () => {
    scratch = await scratchDir('server-endpoint');
    ca = await openServerCa(join(scratch.path, 'ca'), { tlsHostname: TLS_HOSTNAME, address: '127.0.0.1' });
    let refusal: ServerLinks | null = null;
    core = await DiskService.start({
      socket: join(scratch.path, 'nbd.sock'),
      servers: {
        listen: { host: '127.0.0.1', port: 0 },
        tls: { key: ca.keyPem, cert: ca.certPem, ca: ca.caCertPem },
        certificateRefused: (machineId) => refusal?.refusalOf(machineId)?.message ?? null,
      },
      log: () => {},
    });
    const used = new Set<string>();
    linksOptions = {
      dataDir: scratch.path,
      endpoint: {
        address: '127.0.0.1',
        nbdPort: core.addresses.servers!.port,
        agentPort: 0,
        tlsHostname: TLS_HOSTNAME,
        caCertPem: ca.caCertPem,
      },
      ca,
      core,
      disks: hostDiskService(core, { dataDir: scratch.path }),
      // The vault's side of the one control-channel call: 'good' is valid once.
      redeemEnrolment: async (token) => {
        redeemed.push(token);
        if (token !== 'good' || used.has(token)) {
          throw new HavenError('unauthenticated', 'enrolment token is unknown, used or expired');
        }
        used.add(token);
        return ENROLMENT;
      },
      reportIntervalSeconds: 1,
    };
    links = await ServerLinks.open(linksOptions);
    refusal = links;
    endpoint = await startServerAgentEndpoint({
      ca,
      links,
      listen: { host: '127.0.0.1', port: 0 },
      log: () => {},
    });
    const dir = join(scratch.path, 'client');
    const key = await serverAgentKey(dir);
    await writeFile(join(dir, 'ca-cert.pem'), ca.caCertPem);
    client = { key: key.keyPem, csr: key.csrPem, cert: null, dir };
  });

  after(async () => {
    await endpoint.close();
    await core.close();
    await scratch.remove();
  });

  test('enrols once: a refused token is one 401 line, a good one the configuration and a certificate naming the machine', async () => {
    const noToken = await post('/v1/enrol', client.csr);
    assert.equal(noToken.status, 401);
    assert.equal(noToken.body, 'no enrolment token: send Authorization: Bearer TOKEN\n');
    const bad = await post('/v1/enrol', client.csr, { token: 'wrong' });
    assert.deepEqual(bad, { status: 401, body: 'enrolment token is unknown, used or expired\n' });
    const notCsr = await post('/v1/enrol', 'hello', { token: 'good' });
    assert.equal(notCsr.status, 400);
    assert.ok(!redeemed.includes('good'), 'a body that is no CSR does not spend the token');

    const ok = await post('/v1/enrol', client.csr, { token: 'good' });
    assert.equal(ok.status, 200, ok.body);
    const [config = '', certPem = ''] = ok.body.split('\n\n');
    assert.deepEqual(config.split('\n'), [
      'machine web-01',
      'name web',
      `nbd 127.0.0.1 ${core.addresses.servers!.port} ${TLS_HOSTNAME}`,
      'agent 127.0.0.1 0',
      'timeout 30',
      'writebehind 0',
      'report 1',
      `disk disk0 /dev/vda web-01.disk0 ${8 << 20}`,
    ]);
    const cert = new X509Certificate(certPem);
    assert.equal(cert.subject, 'CN=web-01');
    assert.ok(cert.checkIssued(new X509Certificate(ca.caCertPem)));
    client.cert = certPem;
    await writeFile(join(client.dir, 'client-cert.pem'), certPem);
    assert.equal(core.info('web-01.disk0').serverLeg?.connected, false, 'the leg is attached for the server');

    const again = await post('/v1/enrol', client.csr, { token: 'good' });
    assert.equal(again.status, 401);
  });

  test('a report needs the certificate; it is kept and answered with the queued commands', async () => {
    const report = 'hostname web\nversion 1\nstate running\ndisk disk0 /dev/md0 [UU] idle - 0\n';
    const anonymous = await post('/v1/report', report);
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.body, /^a client certificate from this host's server CA is required/);

    const first = await post('/v1/report', report, { certificate: true });
    assert.deepEqual(first, { status: 200, body: '' });
    const status = await links.status({ machineId: 'web-01' });
    assert.equal(status.agent?.hostname, 'web');
    assert.deepEqual(status.agent?.disks, [
      {
        diskId: 'disk0',
        array: '/dev/md0',
        legs: '[UU]',
        action: 'idle',
        progressPercent: null,
        bitmapDirtyChunks: 0,
        mdEvents: null,
      },
    ]);
    assert.equal(status.state, 'degraded', 'the leg is not connected');

    links.queue('web-01', 'readd disk0');
    const shutdown = links.shutdown({ machineId: 'web-01', timeoutMs: 5000 });
    const commands = await post('/v1/report', report, { certificate: true });
    assert.deepEqual(commands, { status: 200, body: 'readd disk0\nshutdown\n' });
    assert.deepEqual(await post('/v1/report', report, { certificate: true }), { status: 200, body: '' });
    await post('/v1/report', report.replace('running', 'stopping'), { certificate: true });
    assert.equal((await shutdown).stopped, true);

    const broken = await post('/v1/report', 'state sleeping\n', { certificate: true });
    assert.equal(broken.status, 400);
    assert.match(broken.body, /^report line 'state sleeping': state is running, stopping or failback\n$/);
  });

  test('an oversized body is refused with 413, and the endpoint keeps serving', async () => {
    const big = Buffer.alloc(MAX_AGENT_BODY_BYTES + 1, 'a');
    const answer = await post('/v1/report', big, { certificate: true });
    assert.deepEqual(answer, { status: 413, body: `the body is over ${MAX_AGENT_BODY_BYTES} bytes\n` });
    assert.equal((await post('/v1/report', 'state running\n', { certificate: true })).status, 200);
  });

  test('a fenced server is refused: its reports (403) and its NBD legs; unfenced, both come back', async () => {
    const uri = `nbds://127.0.0.1:${core.addresses.servers!.port}/web-01.disk0?tls-certificates=${client.dir}&tls-verify-peer=false`;
    assert.equal((await run('nbdinfo', ['--size', uri])).code, 0);
    // A leg connected when the fence comes is cut, not only refused next time.
    const leg = await NbdClient.connect(
      { host: '127.0.0.1', port: core.addresses.servers!.port },
      {
        exportName: 'web-01.disk0',
        tls: { ca: ca.caCertPem, cert: client.cert!, key: client.key, servername: TLS_HOSTNAME },
      },
    );
    assert.equal(core.info('web-01.disk0').serverLeg?.connected, true);
    await links.fence({ machineId: 'web-01', reason: 'failover job 7' });
    await assert.rejects(leg.read(0, 512));
    assert.equal(core.info('web-01.disk0').serverLeg?.connected, false);
    const refused = await post('/v1/report', 'state running\n', { certificate: true });
    assert.deepEqual(refused, {
      status: 403,
      body: 'failed over: this server must stay off (failover job 7)\n',
    });
    assert.notEqual((await run('nbdinfo', ['--size', uri])).code, 0);
    const reopened = await ServerLinks.open(linksOptions);
    assert.notEqual(reopened.refusalOf('web-01'), null, 'the fence is kept across restarts');
    await links.unfence({ machineId: 'web-01' });
    assert.equal((await post('/v1/report', 'state running\n', { certificate: true })).status, 200);
    assert.equal((await run('nbdinfo', ['--size', uri])).code, 0);
  });

  test('a save that failed (the disk refused it) does not stop the next one', async () => {
    const blocker = join(scratch.path, 'servers', 'links.json.tmp');
    await mkdir(blocker);
    await assert.rejects(links.fence({ machineId: 'web-01', reason: 'save fails' }));
    await rmdir(blocker);
    await links.unfence({ machineId: 'web-01' });
    const reopened = await ServerLinks.open(linksOptions);
    assert.equal(reopened.refusalOf('web-01'), null, 'the unfence was saved');
  });

  test('a forgotten server loses its reports, its legs and their staging images; its disks as a VM stay', async () => {
    const staging = join(scratch.path, 'servers', 'web-01');
    assert.ok((await readdir(staging)).includes('disk0.img'), 'the leg is staged');
    // The machine reprotected to this host as a VM: a disk of its own, beside the leg.
    const vmDisk = join(scratch.path, 'machines', 'web-01', 'disk1.img');
    await mkdir(dirname(vmDisk), { recursive: true });
    await writeFile(vmDisk, Buffer.alloc(1 << 20));
    await linksOptions.disks.attach({
      machineId: 'web-01',
      diskId: 'disk1',
      source: vmDisk,
      sizeBytes: 1 << 20,
    });
    await links.forget({ machineId: 'web-01' });
    assert.equal((await post('/v1/report', 'state running\n', { certificate: true })).status, 403);
    assert.deepEqual(
      core.list().map((e) => e.name),
      ['web-01.disk1'],
    );
    await assert.rejects(readdir(staging), { code: 'ENOENT' });
    assert.equal((await links.status({ machineId: 'web-01' })).agent, null);
    await linksOptions.disks.detach({ machineId: 'web-01', diskId: 'disk1' });
  });
});
