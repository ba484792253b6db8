/**
 * Our client against our server (unix, TCP, TLS) and against nbdkit; TLS
 * also against nbdinfo and qemu-img. Debian: nbdkit, libnbd-bin, qemu-utils, openssl.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, runOk, scratchDir } from '../testing/nbd-test-fixture.ts';
import { selfSignedCertificate } from '../testing/self-signed-certificate.ts';
import type { BlockBackend } from './block-backend.ts';
import { BlockState, Command, NbdErrno, TransmissionFlag } from './constants.ts';
import { MemoryBackend } from './memory-backend.ts';
import { NbdClient } from './nbd-client.ts';
import { NbdServer } from './nbd-server.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Wraps a backend so each call first waits `delay(offset)` ms. */
function slowed(inner: BlockBackend, delay: (offset: number) => number): BlockBackend {
  return {
    get size() {
      return inner.size;
    },
    readOnly: inner.readOnly,
    canTrim: inner.canTrim,
    canWriteZeroes: inner.canWriteZeroes,
    read: async (o, l) => {
      await sleep(delay(o));
      return inner.read(o, l);
    },
    write: async (o, d, opts) => {
      await sleep(delay(o));
      return inner.write(o, d, opts);
    },
    flush: () => inner.flush(),
    trim: (o, l, opts) => inner.trim(o, l, opts),
    writeZeroes: (o, l, opts) => inner.writeZeroes(o, l, opts),
    blockStatus: (o, l) => inner.blockStatus(o, l),
    close: () => inner.close(),
  };
}

async function errorOf(p: Promise<unknown>): Promise<{ code: string; nbdError: unknown }> {
  try {
    await p;
  } catch (err) {
    const e = err as { code: string; details: { nbdError?: unknown } };
    return { code: e.code, nbdError: e.details?.nbdError };
  }
  assert.fail('expected the request to fail');
}

describe('NBD client and server together', () => {
  let dir: { path: string; remove: () => Promise<void> };
  let server: NbdServer;
  let socket: string;
  let port: number;
  let tcp: NbdServer;
  const mem = new MemoryBackend({ size: 16 * MiB, pageSize: 4096 });
  const ro = new MemoryBackend({ size: MiB, readOnly: true });

  before(async () => {
    dir = await scratchDir('nbd-client');
    socket = join(dir.path, 'nbd.sock');
    server = new NbdServer({
      exports: { mem: { backend: mem, description: 'memory' }, ro: { backend: ro } },
    });
    await server.listen({ path: socket });
    tcp = new NbdServer({ exports: { mem: { backend: mem } }, defaultExport: 'mem' });
    const addr = await tcp.listen({ host: '127.0.0.1', port: 0 });
    port = (addr as { port: number }).port;
  });

  after(async () => {
    await tcp.close();
    await server.close();
    await dir.remove();
  });

  test('reads, writes, zeroes, trims and block status over a unix socket', async () => {
    const c = await NbdClient.connect({ path: socket }, { exportName: 'mem' });
    assert.equal(c.size, 16 * MiB);
    assert.equal(c.structuredReplies, true);
    assert.ok(c.can(TransmissionFlag.SEND_TRIM) && c.can(TransmissionFlag.SEND_WRITE_ZEROES));
    const data = randomBytes(100_000);
    await c.write(4095, data, { fua: true });
    assert.ok((await c.read(4095, data.length)).equals(data));
    assert.equal(mem.fuaWrites, 1);
    await c.writeZeroes(8192, 4096, { noHole: true });
    await c.trim(65536, 8192);
    await c.flush();
    assert.equal(mem.flushes, 1);
    const expect = Buffer.from(data);
    expect.fill(0, 8192 - 4095, 8192 - 4095 + 4096);
    expect.fill(0, 65536 - 4095, 65536 - 4095 + 8192);
    assert.ok((await c.read(4095, data.length)).equals(expect));
    const extents = await c.blockStatus(0, 256 * KiB);
    assert.deepEqual(
      extents.map((e) => [e.offset, e.length, e.flags]),
      [
        [0, 65536, 0],
        [65536, 8192, BlockState.HOLE | BlockState.ZERO],
        // Allocation is per 4 KiB page: the write ending at 104095 fills its page.
        [73728, 32768, 0],
        [106496, 256 * KiB - 106496, BlockState.HOLE | BlockState.ZERO],
      ],
    );
    const one = await c.blockStatus(65536, 256 * KiB, { reqOne: true });
    assert.deepEqual(one, [{ offset: 65536, length: 8192, flags: 3 }]);
    await c.disconnect();
  });

  test('many requests in flight complete out of order and match a model', async () => {
    const backend = new MemoryBackend({ size: 4 * MiB });
    // Later offsets answer sooner, so replies overtake each other.
    const name = 'slow';
    server.addExport(name, { backend: slowed(backend, (o) => 40 - Math.floor(o / (128 * KiB)) * 4) });
    const c = await NbdClient.connect({ path: socket }, { exportName: name });
    const model = Buffer.alloc(backend.size);
    const writes = Array.from({ length: 10 }, (_, i) => {
      const d = randomBytes(64 * KiB);
      d.copy(model, i * 128 * KiB);
      return c.write(i * 128 * KiB, d);
    });
    assert.equal(c.inFlight, 10);
    await Promise.all(writes);
    const order: number[] = [];
    const reads = Array.from({ length: 10 }, (_, i) =>
      c.read(i * 128 * KiB, 64 * KiB).then((b) => {
        order.push(i);
        return b;
      }),
    );
    const got = await Promise.all(reads);
    got.forEach((b, i) => {
      assert.ok(b.equals(model.subarray(i * 128 * KiB, i * 128 * KiB + 64 * KiB)), `read ${i}`);
    });
    assert.notDeepEqual(
      order,
      [...order].sort((a, b) => a - b),
      'replies all came back in request order',
    );
    await c.disconnect();
    await server.removeExport(name);
  });

  test('TCP with the default export, plus list and info', async () => {
    const c = await NbdClient.connect({ host: '127.0.0.1', port });
    assert.equal(c.info.name, 'mem');
    assert.equal(c.info.blockSize?.maximum, 32 * MiB);
    await c.write(0, Buffer.from('hello'));
    assert.equal((await c.read(0, 5)).toString(), 'hello');
    await c.disconnect();
    const list = await NbdClient.list({ path: socket });
    assert.deepEqual(list.map((e) => e.name).sort(), ['mem', 'ro']);
    assert.equal(list.find((e) => e.name === 'mem')?.description, 'memory');
    const info = await NbdClient.exportInfo({ path: socket }, 'ro');
    assert.equal(info.size, MiB);
    assert.ok(info.transmissionFlags & TransmissionFlag.READ_ONLY);
    await assert.rejects(NbdClient.exportInfo({ path: socket }, 'nope'), { code: 'not_found' });
    await assert.rejects(NbdClient.connect({ path: socket }, { exportName: 'nope' }), { code: 'not_found' });
  });

  test('errors: past the end, read-only, unknown command, bad flags', async () => {
    const c = await NbdClient.connect({ path: socket }, { exportName: 'mem' });
    const size = c.size;
    assert.deepEqual(await errorOf(c.read(size - 1, 2)), { code: 'bad_request', nbdError: 'EINVAL' });
    assert.deepEqual(await errorOf(c.write(size, Buffer.alloc(1))), {
      code: 'bad_request',
      nbdError: 'ENOSPC',
    });
    assert.deepEqual(await errorOf(c.writeZeroes(2n ** 63n, 1)), { code: 'bad_request', nbdError: 'ENOSPC' });
    assert.deepEqual(await errorOf(c.read(2n ** 64n - 1n, 1)), { code: 'bad_request', nbdError: 'EINVAL' });
    assert.deepEqual(await errorOf(c.blockStatus(size, 1)), { code: 'bad_request', nbdError: 'EINVAL' });
    assert.deepEqual(await errorOf(c.read(0, 32 * MiB + 1)), { code: 'bad_request', nbdError: 'EINVAL' });
    assert.deepEqual(await errorOf(c.rawRequest(42, 0, 0n, 0)), { code: 'bad_request', nbdError: 'EINVAL' });
    assert.deepEqual(await errorOf(c.rawRequest(Command.CACHE, 0, 0n, 512)), {
      code: 'bad_request',
      nbdError: 'EINVAL',
    });
    assert.deepEqual(await errorOf(c.rawRequest(Command.READ, 1 << 9, 0n, 512)), {
      code: 'bad_request',
      nbdError: 'EINVAL',
    });
    // A write larger than the limit is drained and refused; the connection lives on.
    assert.deepEqual(await errorOf(c.write(0, Buffer.alloc(32 * MiB + 4096))), {
      code: 'bad_request',
      nbdError: 'EINVAL',
    });
    assert.equal((await c.read(0, 5)).length, 5);
    await c.disconnect();
    const r = await NbdClient.connect({ path: socket }, { exportName: 'ro' });
    assert.equal(r.readOnly, true);
    assert.deepEqual(await errorOf(r.write(0, Buffer.alloc(512))), { code: 'forbidden', nbdError: 'EPERM' });
    assert.deepEqual(await errorOf(r.rawRequest(Command.TRIM, 0, 0n, 512)), {
      code: 'forbidden',
      nbdError: 'EPERM',
    });
    await r.disconnect();
    assert.equal(NbdErrno.EPERM, 1);
  });

  test('simple replies when structured replies are not negotiated', async () => {
    const c = await NbdClient.connect({ path: socket }, { exportName: 'mem', structuredReplies: false });
    assert.equal(c.structuredReplies, false);
    await c.write(MiB, Buffer.alloc(3000, 7));
    assert.ok((await c.read(MiB, 3000)).equals(Buffer.alloc(3000, 7)));
    assert.deepEqual(await errorOf(c.read(c.size, 1)), { code: 'bad_request', nbdError: 'EINVAL' });
    await assert.rejects(c.blockStatus(0, 4096), { code: 'not_available' });
    // The error left no stray payload: the stream is still in step.
    assert.ok((await c.read(MiB, 10)).equals(Buffer.alloc(10, 7)));
    await c.disconnect();
  });

  test('exports added and removed at runtime; removal ends their connections', async () => {
    const view = new MemoryBackend({ size: MiB });
    server.addExport('view', { backend: view, description: 'point in time' });
    assert.ok((await NbdClient.list({ path: socket })).some((e) => e.name === 'view'));
    const c = await NbdClient.connect({ path: socket }, { exportName: 'view' });
    await c.write(0, Buffer.alloc(10, 1));
    await server.removeExport('view');
    await assert.rejects(c.read(0, 10), { code: 'unreachable' });
    await assert.rejects(NbdClient.connect({ path: socket }, { exportName: 'view' }), { code: 'not_found' });
  });

  test('backpressure: in-flight bytes stay bounded and drain to zero', async () => {
    const backend = new MemoryBackend({ size: 32 * MiB });
    const limited = new NbdServer({
      exports: { slow: { backend: slowed(backend, () => 3) } },
      maxPayload: 256 * KiB,
      maxInFlightBytes: MiB,
    });
    const sock = join(dir.path, 'limited.sock');
    await limited.listen({ path: sock });
    const c = await NbdClient.connect({ path: sock }, { exportName: 'slow' });
    let peakInFlight = 0;
    let peakBuffered = 0;
    const sampler = setInterval(() => {
      const s = limited.stats();
      peakInFlight = Math.max(peakInFlight, s.inFlightBytes);
      peakBuffered = Math.max(peakBuffered, s.bufferedBytes);
    }, 1);
    const chunk = randomBytes(256 * KiB);
    await Promise.all(Array.from({ length: 96 }, (_, i) => c.write(i * 256 * KiB, chunk)));
    clearInterval(sampler);
    assert.ok(peakInFlight > 0 && peakInFlight <= MiB + 256 * KiB, `peak in flight ${peakInFlight}`);
    assert.ok(peakBuffered <= MiB, `peak buffered ${peakBuffered}`);
    assert.ok((await c.read(95 * 256 * KiB, 256 * KiB)).equals(chunk));
    await c.disconnect();
    await limited.close();
    assert.deepEqual(limited.stats(), {
      connections: 0,
      inFlightRequests: 0,
      inFlightBytes: 0,
      bufferedBytes: 0,
    });
  });

  test('close() answers requests in flight, then ends connections', async () => {
    const backend = new MemoryBackend({ size: MiB });
    const closing = new NbdServer({ exports: { d: { backend: slowed(backend, () => 50) } } });
    const sock = join(dir.path, 'closing.sock');
    await closing.listen({ path: sock });
    const c = await NbdClient.connect({ path: sock }, { exportName: 'd' });
    const pending = c.write(0, Buffer.alloc(4096, 9));
    await sleep(10);
    await closing.close();
    await pending;
    assert.ok((await backend.read(0, 4096)).equals(Buffer.alloc(4096, 9)));
    await assert.rejects(c.read(0, 1), { code: 'unreachable' });
    assert.equal(existsSync(sock), false);
  });
});

describe('NBD client against nbdkit', () => {
  let dir: { path: string; remove: () => Promise<void> };
  let nbdkit: ChildProcess;
  let socket: string;

  before(async () => {
    dir = await scratchDir('nbd-nbdkit');
    socket = join(dir.path, 'nbdkit.sock');
    nbdkit = spawn('nbdkit', ['--foreground', '--exit-with-parent', '--unix', socket, 'memory', '16M'], {
      stdio: 'ignore',
    });
    // nbdkit creates the socket file a moment before it accepts on it.
    for (let i = 0; i < 100; i++) {
      const probe = await NbdClient.list({ path: socket }).catch(() => null);
      if (probe) break;
      await sleep(20);
    }
  });

  after(async () => {
    nbdkit.kill();
    await dir.remove();
  });

  test('read, write, zero, trim, flush and block status interoperate', async () => {
    const c = await NbdClient.connect({ path: socket });
    assert.equal(c.size, 16 * MiB);
    assert.equal(c.structuredReplies, true);
    const data = randomBytes(3 * MiB + 17);
    await Promise.all([
      c.write(1000, data.subarray(0, MiB)),
      c.write(1000 + MiB, data.subarray(MiB), { fua: true }),
    ]);
    await c.flush();
    assert.ok((await c.read(1000, data.length)).equals(data));
    await c.writeZeroes(MiB, 64 * KiB);
    data.fill(0, MiB - 1000, MiB - 1000 + 64 * KiB);
    assert.ok((await c.read(1000, data.length)).equals(data));
    const extents = await c.blockStatus(8 * MiB, 8 * MiB);
    assert.equal(extents[0]?.offset, 8 * MiB);
    assert.ok((extents[0]!.flags & BlockState.HOLE) !== 0, 'untouched nbdkit memory is a hole');
    await c.trim(0, 16 * MiB);
    assert.deepEqual(await errorOf(c.read(16 * MiB, 1)), { code: 'bad_request', nbdError: 'EINVAL' });
    await c.disconnect();
    const list = await NbdClient.list({ path: socket });
    assert.equal(list.length, 1);
  });
});

describe('NBD over TLS', () => {
  let dir: { path: string; remove: () => Promise<void> };
  let server: NbdServer;
  let port: number;
  let ca: Buffer;
  const backend = new MemoryBackend({ size: 4 * MiB });

  before(async () => {
    dir = await scratchDir('nbd-tls');
    const key = join(dir.path, 'server-key.pem');
    const cert = join(dir.path, 'server-cert.pem');
    await selfSignedCertificate(key, cert);
    // libnbd and qemu look for the CA as ca-cert.pem in a directory.
    await copyFile(cert, join(dir.path, 'ca-cert.pem'));
    ca = await readFile(cert);
    server = new NbdServer({
      exports: { secret: { backend } },
      tls: { key: await readFile(key), cert: ca, required: true },
    });
    port = ((await server.listen({ host: '127.0.0.1', port: 0 })) as { port: number }).port;
  });

  after(async () => {
    await server.close();
    await dir.remove();
  });

  test('our client upgrades with STARTTLS; without TLS the server refuses', async () => {
    const c = await NbdClient.connect({ host: '127.0.0.1', port }, { exportName: 'secret', tls: { ca } });
    await c.write(0, Buffer.from('over tls'));
    assert.equal((await c.read(0, 8)).toString(), 'over tls');
    await c.disconnect();
    await assert.rejects(NbdClient.connect({ host: '127.0.0.1', port }, { exportName: 'secret' }), {
      code: 'forbidden',
    });
    await assert.rejects(NbdClient.list({ host: '127.0.0.1', port }), { code: 'forbidden' });
    // A client that does not trust the certificate fails the handshake.
    await assert.rejects(NbdClient.connect({ host: '127.0.0.1', port }, { exportName: 'secret', tls: {} }), {
      code: 'unreachable',
    });
  });

  test('nbdinfo over nbds:// with a certificates directory', async () => {
    const out = await runOk('nbdinfo', [
      '--json',
      `nbds://127.0.0.1:${port}/secret?tls-certificates=${dir.path}`,
    ]);
    const info = JSON.parse(out);
    assert.equal(info.TLS, true);
    assert.equal(info.exports[0]['export-size'], 4 * MiB);
    const plain = await run('nbdinfo', ['--json', `nbd://127.0.0.1:${port}/secret`]);
    assert.notEqual(plain.code, 0);
  });

  test('qemu-img info with tls-creds-x509', async () => {
    const out = await runOk('qemu-img', [
      'info',
      '--output=json',
      '--object',
      `tls-creds-x509,id=tls0,dir=${dir.path},endpoint=client`,
      '--image-opts',
      `driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=${port},export=secret,tls-creds=tls0`,
    ]);
    assert.equal(JSON.parse(out)['virtual-size'], 4 * MiB);
  });
});
