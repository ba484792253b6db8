/**
 * The host's server CA with the real openssl: made once and kept (keys
 * 0600), an endpoint certificate for the tls hostname and address, client
 * certificates whose CN is the machine whatever the CSR says; and the NBD
 * listener for servers, reached by libnbd's nbdinfo/nbdcopy over TLS with
 * those certificates: each machine's legs only to its own certificate.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DiskService } from '../disk/disk-service.ts';
import type { HavenError } from '../errors/index.ts';
import { createSparseImage } from '../storage/sparse-image.ts';
import { run, runOk, scratchDir } from '../testing/nbd-test-fixture.ts';
import { serverAgentKey } from '../testing/server-agent.fixture.ts';
import { openServerCa, type ServerCa } from './server-ca.ts';

/** A key and CSR as the server agent makes them (any subject), and the folder libnbd reads them from. */
async function clientCredentials(ca: ServerCa, dir: string, machineId: string | null): Promise<string> {
  const { csrPem } = await serverAgentKey(dir);
  await writeFile(join(dir, 'ca-cert.pem'), ca.caCertPem);
  if (machineId !== null) {
    await writeFile(join(dir, 'client-cert.pem'), await ca.signClient(csrPem, machineId));
  }
  return dir;
}

describe('server CA', () => {
  let scratch: { path: string; remove: () => Promise<void> };
  let ca: ServerCa;
  const names = { tlsHostname: 'haven-primary.example', address: '127.0.0.1' };
  before(async () => {
    scratch = await scratchDir('server-ca');
    ca = await openServerCa(join(scratch.path, 'ca'), names);
  });
  after(async () => {
    await scratch.remove();
  });

  test('is made once, keys 0600; the endpoint certificate covers the hostname and address, made again when they change', async () => {
    for (const key of ['ca-key.pem', 'server-key.pem']) {
      assert.equal((await stat(join(scratch.path, 'ca', key))).mode & 0o777, 0o600, key);
    }
    const again = await openServerCa(join(scratch.path, 'ca'), names);
    assert.equal(again.caCertPem, ca.caCertPem);
    assert.equal(again.certPem, ca.certPem);
    const cert = new X509Certificate(ca.certPem);
    assert.ok(cert.checkIssued(new X509Certificate(ca.caCertPem)));
    assert.ok(cert.checkHost('haven-primary.example'));
    assert.ok(cert.checkIP('127.0.0.1'));
    const moved = await openServerCa(join(scratch.path, 'ca'), { ...names, address: '10.0.0.7' });
    assert.equal(moved.caCertPem, ca.caCertPem, 'same CA: enrolled servers keep their certificates');
    assert.notEqual(moved.certPem, ca.certPem);
    assert.ok(new X509Certificate(moved.certPem).checkIP('10.0.0.7'));
  });

  test('signs a CSR with CN = the machine and clientAuth, whatever its subject; refuses what is no CSR', async () => {
    const dir = await clientCredentials(ca, join(scratch.path, 'client-a'), 'machine-a');
    const cert = new X509Certificate(await readFile(join(dir, 'client-cert.pem'), 'utf8'));
    assert.equal(cert.subject, 'CN=machine-a');
    assert.ok(cert.checkIssued(new X509Certificate(ca.caCertPem)));
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.2']);
    await assert.rejects(ca.signClient('hello', 'machine-a'), (e: HavenError) => e.code === 'bad_request');
    const damaged = (await readFile(join(dir, 'client.csr'), 'utf8')).replace(/A/g, 'B');
    await assert.rejects(ca.signClient(damaged, 'machine-a'), (e: HavenError) => e.code === 'bad_request');
  });

  test('NBD for servers: nbdinfo and nbdcopy with the machine certificate; another machine or no certificate is refused', async () => {
    const logged: string[] = [];
    const service = await DiskService.start({
      socket: join(scratch.path, 'nbd.sock'),
      servers: {
        listen: { host: '127.0.0.1', port: 0 },
        tls: { key: ca.keyPem, cert: ca.certPem, ca: ca.caCertPem },
      },
      log: (line) => logged.push(line),
    });
    try {
      const image = join(scratch.path, 'leg.img');
      await createSparseImage(image, 1 << 20);
      const info = await service.attach('machine-a.disk0', {
        imagePath: image,
        serverLeg: { machineId: 'machine-a' },
      });
      const port = service.addresses.servers?.port;
      assert.equal(info.uris.tcp, `nbds://127.0.0.1:${port}/machine-a.disk0`);
      const uri = (dir: string) =>
        `nbds://127.0.0.1:${port}/machine-a.disk0?tls-certificates=${dir}&tls-hostname=${names.tlsHostname}`;
      const own = await clientCredentials(ca, join(scratch.path, 'client-own'), 'machine-a');
      assert.match(await runOk('nbdinfo', ['--size', uri(own)]), /^1048576/);
      const copied = join(scratch.path, 'copied.img');
      await runOk('nbdcopy', [uri(own), copied]);
      assert.equal((await stat(copied)).size, 1 << 20);
      assert.deepEqual(service.info('machine-a.disk0').serverLeg, {
        md: 'unknown',
        syncedBytes: null,
        pointsAllowed: false,
        connected: false,
      });

      const other = await clientCredentials(ca, join(scratch.path, 'client-other'), 'machine-b');
      const refused = await run('nbdinfo', ['--size', uri(other)]);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /no export named 'machine-a.disk0'/);
      assert.ok(
        logged.some((l) => l.includes('CN=machine-b') && l.includes("'machine-a.disk0'")),
        `logged: ${logged.join('\n')}`,
      );
      // Named right, signed by another CA: a TLSSocket outside a tls.Server would let it in unchecked.
      const rogueCa = await openServerCa(join(scratch.path, 'rogue-ca'), names);
      const rogue = await clientCredentials(rogueCa, join(scratch.path, 'client-rogue'), 'machine-a');
      await writeFile(join(rogue, 'ca-cert.pem'), ca.caCertPem);
      const forged = await run('nbdinfo', ['--size', uri(rogue)]);
      assert.notEqual(forged.code, 0, 'a certificate from another CA is refused');
      const none = await clientCredentials(ca, join(scratch.path, 'client-none'), null);
      const noCert = await run('nbdinfo', ['--size', uri(none)]);
      assert.notEqual(noCert.code, 0, 'no client certificate: the TLS handshake fails');
      const plain = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/machine-a.disk0`]);
      assert.notEqual(plain.code, 0, 'no TLS: refused');
    } finally {
      await service.close();
    }
  });
});
