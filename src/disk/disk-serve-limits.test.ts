/**
 * `haven disk serve` against hostile clients, as a real process: fifty
 * clients that send large requests and never read a reply keep its memory
 * under a bound while a well-behaved client (qemu-io) is still served, and
 * TCP is served only to clients with a certificate (nbdinfo, libnbd's TLS).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import * as net from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createSparseImage } from '../storage/sparse-image.ts';
import { type Child, freePort, runHaven, spawnTs } from '../testing/child-process.ts';
import { run, scratchDir } from '../testing/nbd-test-fixture.ts';
import { clientCertificate, selfSignedCertificate } from '../testing/self-signed-certificate.ts';

const MiB = 1024 * 1024;
/**
 * The server's RSS must stay under this while the hogs push: its NBD budget
 * is 256 MiB, Node itself takes ~130 MiB, and at gigabytes a second of large
 * writes, payloads already answered wait a while for the garbage collector
 * (peaks of 0.8-1 GiB measured). Without the budget it grows by 64 MiB per
 * client (2.4 GiB measured for this load).
 */
const RSS_BOUND = 1536 * MiB;

function serve(args: string[]): Child {
  return spawnTs('src/cli/main.ts', ['disk', 'serve', ...args]);
}

async function stop(child: Child): Promise<void> {
  if (child.process.exitCode !== null) return;
  child.process.kill('SIGTERM');
  const exited = await Promise.race([child.exited.then(() => true), sleep(10_000).then(() => false)]);
  if (!exited) {
    child.process.kill('SIGKILL');
    await child.exited;
  }
}

async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

/**
 * A client that completes the handshake, then sends `count` requests of
 * `length` bytes (READs, or WRITEs with their data) and never reads a byte
 * of the replies.
 */
async function hog(
  socketPath: string,
  kind: 'read' | 'write',
  count: number,
  length: number,
): Promise<net.Socket> {
  const socket = net.connect(socketPath);
  socket.on('error', () => {});
  let received = Buffer.alloc(0);
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length === 18) {
        const flags = Buffer.alloc(4);
        flags.writeUInt32BE(3); // fixed newstyle, no zeroes
        const option = Buffer.alloc(16);
        option.write('IHAVEOPT', 0, 'latin1');
        option.writeUInt32BE(1, 8); // NBD_OPT_EXPORT_NAME, the empty name
        socket.write(Buffer.concat([flags, option]));
      } else if (received.length >= 28) {
        socket.removeAllListeners('data');
        socket.pause();
        resolve();
      }
    });
    socket.once('close', () => reject(new Error('hog: the server closed during the handshake')));
  });
  const data = kind === 'write' ? Buffer.alloc(length, 0x77) : null;
  void (async () => {
    for (let i = 0; i < count && !socket.destroyed; i++) {
      const header = Buffer.alloc(28);
      header.writeUInt32BE(0x25609513, 0);
      header.writeUInt16BE(kind === 'write' ? 1 : 0, 6);
      header.writeBigUInt64BE(BigInt(i + 1), 8);
      header.writeBigUInt64BE(0n, 16);
      header.writeUInt32BE(length, 24);
      const ok = socket.write(header) && (data === null || socket.write(data));
      if (!ok && !socket.destroyed) {
        await new Promise<void>((resolve) => {
          socket.once('drain', resolve);
          socket.once('close', resolve);
        });
      }
    }
  })();
  return socket;
}

describe('haven disk serve limits', () => {
  test('fifty clients that never read replies keep memory bounded; a well-behaved client is still served', async (t) => {
    const scratch = await scratchDir('disk-serve-memory');
    const socketPath = join(scratch.path, 'nbd.sock');
    const image = join(scratch.path, 'disk.img');
    await createSparseImage(image, 64 * MiB);
    const server = serve(['--image', image, '--socket', socketPath, '--journal-capacity', '32M']);
    const hogs: net.Socket[] = [];
    try {
      await server.firstJson();
      const pid = server.process.pid as number;
      const baseline = await rssOf(pid);
      // 35 read large blocks, 15 write them; none reads a reply.
      for (let i = 0; i < 50; i++) {
        hogs.push(await hog(socketPath, i % 10 < 7 ? 'read' : 'write', 12, 32 * MiB));
      }
      let peak = 0;
      const watch = (async () => {
        for (let i = 0; i < 60 && server.process.exitCode === null; i++) {
          peak = Math.max(peak, await rssOf(pid));
          if (peak > RSS_BOUND) return;
          await sleep(200);
        }
      })();
      await sleep(1500);
      // A well-behaved client meanwhile: write, flush, read back.
      const started = Date.now();
      const good = await run(
        'qemu-io',
        [
          '-f',
          'raw',
          `nbd+unix:///disk?socket=${socketPath}`,
          '-c',
          'write -P 0x33 40M 64k',
          '-c',
          'flush',
          '-c',
          'read -P 0x33 40M 64k',
        ],
        { cwd: scratch.path, timeoutMs: 60_000 },
      );
      const servedInMs = Date.now() - started;
      await watch;
      t.diagnostic(
        `server RSS peak ${(peak / MiB).toFixed(0)} MiB; well-behaved client served in ${servedInMs} ms`,
      );
      assert.ok(
        peak <= RSS_BOUND,
        `server RSS peaked at ${(peak / MiB).toFixed(0)} MiB (bound ${RSS_BOUND / MiB} MiB, baseline ${(baseline / MiB).toFixed(0)} MiB)`,
      );
      assert.equal(good.code, 0, good.stderr + good.stdout);
      assert.doesNotMatch(good.stdout + good.stderr, /failed|error/i);
      assert.ok(servedInMs < 10_000, `the well-behaved client was served in ${servedInMs} ms`);
      assert.match(server.output(), /NBD: closing the NBD client .* memory budget is spent/);
    } finally {
      for (const s of hogs) s.destroy();
      await stop(server);
      await scratch.remove();
    }
  });

  // A service that wrongly starts serving would make `runHaven` wait for ever: bounded.
  test('TCP is served only to clients with a certificate signed by --tls-ca', {
    timeout: 60_000,
  }, async () => {
    const scratch = await scratchDir('disk-serve-tls');
    const image = join(scratch.path, 'disk.img');
    await createSparseImage(image, 4 * MiB);
    const dir = scratch.path;
    // libnbd reads ca-cert.pem (the server's CA), client-cert.pem and client-key.pem from tls-certificates.
    const clientDir = join(dir, 'client');
    const anonDir = join(dir, 'anon');
    await Promise.all([run('mkdir', ['-p', clientDir, anonDir])]);
    // The server's certificate is its own CA, and signs the client's.
    const serverKey = join(dir, 'server-key.pem');
    const serverCert = join(clientDir, 'ca-cert.pem');
    await selfSignedCertificate(serverKey, serverCert);
    await run('cp', [serverCert, join(anonDir, 'ca-cert.pem')]);
    await clientCertificate(
      serverKey,
      serverCert,
      join(clientDir, 'client-key.pem'),
      join(clientDir, 'client-cert.pem'),
    );
    const port = await freePort();
    const listen = `127.0.0.1:${port}`;

    const refused = await runHaven(['disk', 'serve', '--image', image, '--listen', listen]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr + refused.stdout, /client certificates.*--tls-ca.*--insecure-listen/s);
    const serverTls = [
      '--image',
      image,
      '--listen',
      listen,
      '--tls-cert',
      serverCert,
      '--tls-key',
      serverKey,
    ];
    const serverOnly = await runHaven(['disk', 'serve', ...serverTls]);
    assert.notEqual(serverOnly.code, 0, 'TLS without client certificates authenticates nobody');

    const server = serve([...serverTls, '--tls-ca', serverCert]);
    try {
      const { uri } = await server.firstJson<{ uri: string }>();
      assert.equal(uri, `nbds://127.0.0.1:${port}/disk`);
      const ok = await run('nbdinfo', ['--json', `${uri}?tls-certificates=${clientDir}`], { cwd: dir });
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(JSON.parse(ok.stdout).exports[0]['export-size'], 4 * MiB);
      const noCert = await run('nbdinfo', ['--json', `${uri}?tls-certificates=${anonDir}`], { cwd: dir });
      assert.notEqual(noCert.code, 0, 'a client without a certificate is refused');
      const plain = await run('nbdinfo', ['--json', `nbd://127.0.0.1:${port}/disk`], { cwd: dir });
      assert.notEqual(plain.code, 0, 'a client without TLS is refused');
      const qemu = await run(
        'qemu-io',
        [
          '--object',
          `tls-creds-x509,id=tls0,dir=${clientDir},endpoint=client`,
          '--image-opts',
          `driver=raw,file.driver=nbd,file.host=127.0.0.1,file.port=${port},file.export=disk,file.tls-creds=tls0`,
          '-c',
          'write -P 0x21 0 4k',
          '-c',
          'read -P 0x21 0 4k',
        ],
        { cwd: dir },
      );
      assert.equal(qemu.code, 0, qemu.stderr + qemu.stdout);
      assert.doesNotMatch(qemu.stdout + qemu.stderr, /failed|error/i);
    } finally {
      await stop(server);
      await scratch.remove();
    }
  });
});
