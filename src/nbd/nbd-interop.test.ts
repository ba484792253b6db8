/**
 * Our server against NBD clients nobody here wrote: libnbd's nbdinfo and
 * nbdcopy, qemu-io, qemu-img and fio (Debian: libnbd-bin, qemu-utils, fio).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { nbdinfoMap, nbdUnixUri, run, runFioVerify, runOk, scratchDir } from '../testing/nbd-test-fixture.ts';
import type { BlockExtent } from './block-backend.ts';
import { FileBackend } from './file-backend.ts';
import { MemoryBackend } from './memory-backend.ts';
import { NbdClient } from './nbd-client.ts';
import { NbdServer } from './nbd-server.ts';

const MiB = 1024 * 1024;

describe('NBD server interoperability', () => {
  let dir: { path: string; remove: () => Promise<void> };
  let server: NbdServer;
  let socket: string;
  let disk: FileBackend;
  const sparse = new MemoryBackend({ size: 8 * MiB, pageSize: 4096 });
  const scratch = new MemoryBackend({ size: 4 * MiB, pageSize: 4096 });
  const conv = new MemoryBackend({ size: 16 * MiB });
  const readOnly = new MemoryBackend({ size: MiB, readOnly: true });
  /** Knows its allocation to the byte, as a replica view does: data in runs that start and end inside sectors. */
  class ByteExtents extends MemoryBackend {
    static readonly data = [
      { offset: 1000, length: 100 },
      { offset: 5000, length: 3 },
      { offset: 70_000, length: 1500 },
    ];
    override async blockStatus(offset: number, length: number): Promise<BlockExtent[]> {
      const out: BlockExtent[] = [];
      let at = 0;
      for (const d of ByteExtents.data) {
        if (d.offset > at) out.push({ offset: at, length: d.offset - at, flags: 3 });
        out.push({ offset: d.offset, length: d.length, flags: 0 });
        at = d.offset + d.length;
      }
      out.push({ offset: at, length: this.size - at, flags: 3 });
      return out.filter((e) => e.offset + e.length > offset && e.offset < offset + length);
    }
  }
  const bytes = new ByteExtents({ size: MiB });
  const uri = (name: string) => nbdUnixUri(socket, name);

  before(async () => {
    dir = await scratchDir('nbd-interop');
    socket = join(dir.path, 'nbd.sock');
    const image = join(dir.path, 'disk.raw');
    await runOk('truncate', ['-s', '64M', image]);
    disk = await FileBackend.open(image);
    await sparse.write(MiB, Buffer.alloc(8192, 1), { fua: false });
    await sparse.write(3 * MiB + 4096, Buffer.alloc(4096, 2), { fua: false });
    for (const d of ByteExtents.data) await bytes.write(d.offset, randomBytes(d.length), { fua: false });
    server = new NbdServer({
      exports: {
        disk: { backend: disk, description: 'raw image file' },
        sparse: { backend: sparse, description: 'sparse memory disk' },
        scratch: { backend: scratch },
        conv: { backend: conv },
        ro: { backend: readOnly },
        bytes: { backend: bytes },
      },
      defaultExport: 'disk',
    });
    await server.listen({ path: socket });
  });

  after(async () => {
    await server.close();
    await disk.close();
    await dir.remove();
  });

  test('nbdinfo reports size, description and transmission flags', async () => {
    const out = JSON.parse(await runOk('nbdinfo', ['--json', uri('sparse')]));
    const exp = out.exports[0];
    assert.equal(out.structured, true);
    assert.equal(exp['export-size'], 8 * MiB);
    assert.equal(exp.description, 'sparse memory disk');
    assert.deepEqual(exp.contexts, ['base:allocation']);
    assert.equal(exp.can_trim, true);
    assert.equal(exp.can_zero, true);
    assert.equal(exp.can_flush, true);
    assert.equal(exp.can_fua, true);
    const ro = JSON.parse(await runOk('nbdinfo', ['--json', uri('ro')])).exports[0];
    assert.equal(ro.is_read_only, true);
    // The empty name reaches the default export.
    const dflt = JSON.parse(await runOk('nbdinfo', ['--json', `nbd+unix://?socket=${socket}`])).exports[0];
    assert.equal(dflt['export-size'], 64 * MiB);
  });

  test('nbdinfo --list lists every export with its description', async () => {
    const out = JSON.parse(await runOk('nbdinfo', ['--list', '--json', `nbd+unix://?socket=${socket}`]));
    const names = out.exports.map((e: { 'export-name': string }) => e['export-name']).sort();
    assert.deepEqual(names, ['bytes', 'conv', 'disk', 'ro', 'scratch', 'sparse']);
    const d = out.exports.find((e: { 'export-name': string }) => e['export-name'] === 'disk');
    assert.equal(d.description, 'raw image file');
  });

  test('nbdinfo --map shows the holes of a sparse export', async () => {
    const extents = await nbdinfoMap(uri('sparse'));
    assert.deepEqual(extents, [
      [0, MiB, 3],
      [MiB, 8192, 0],
      [MiB + 8192, 2 * MiB - 8192 + 4096, 3],
      [3 * MiB + 4096, 4096, 0],
      [3 * MiB + 8192, 5 * MiB - 8192, 3],
    ]);
  });

  test('nbdcopy copies 64 MiB of random data in and out byte for byte', async () => {
    const src = join(dir.path, 'random.bin');
    const back = join(dir.path, 'back.bin');
    const data = randomBytes(64 * MiB);
    await writeFile(src, data);
    await runOk('nbdcopy', [src, uri('disk')]);
    await runOk('nbdcopy', [uri('disk'), back]);
    const copied = await readFile(back);
    assert.equal(copied.length, data.length);
    assert.ok(copied.equals(data), 'copied image differs from the source');
    // The bytes really are in the image file, not only in some cache.
    assert.ok((await disk.read(12345 * 1000, 4096)).equals(data.subarray(12345 * 1000, 12345 * 1000 + 4096)));
  });

  test('qemu-io patterns, unaligned and zero writes land where the model says', async () => {
    const model = Buffer.alloc(scratch.size);
    const ops: Array<[string, (m: Buffer) => void]> = [
      ['write -P 0xab 0 64k', (m) => m.fill(0xab, 0, 65536)],
      ['write -P 0xcd 1000 3333', (m) => m.fill(0xcd, 1000, 4333)],
      ['write -z 8192 4096', (m) => m.fill(0, 8192, 12288)],
      ['write -P 0x11 65535 2', (m) => m.fill(0x11, 65535, 65537)],
      ['write -P 0x5a 1048577 131071', (m) => m.fill(0x5a, 1048577, 1179648)],
      ['write -z -u 1114112 65536', (m) => m.fill(0, 1114112, 1179648)],
      ['write -P 0x77 4194303 1', (m) => m.fill(0x77, 4194303, 4194304)],
    ];
    const args = ['-f', 'raw', uri('scratch')];
    for (const [op, apply] of ops) {
      args.push('-c', op);
      apply(model);
    }
    args.push(
      '-c',
      'read -P 0xab 0 1000',
      '-c',
      'read -P 0xcd 1000 3333',
      '-c',
      'read -P 0 8192 4096',
      '-c',
      'read -P 0x11 65535 2',
      '-c',
      'read -P 0x5a 1048577 65535',
      '-c',
      'read -P 0 1114112 65536',
      '-c',
      'flush',
    );
    const r = await run('qemu-io', args);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /Pattern verification failed|error|failed/i);
    // A pattern that is not there must be reported: the check can fail.
    const wrong = await run('qemu-io', ['-f', 'raw', uri('scratch'), '-c', 'read -P 0xee 1000 3333']);
    assert.match(wrong.stdout + wrong.stderr, /Pattern verification failed/);
    const client = await NbdClient.connect({ path: socket }, { exportName: 'scratch' });
    assert.ok((await client.read(0, scratch.size)).equals(model));
    await client.disconnect();
  });

  test('qemu-img convert from an export that knows its allocation to the byte copies every byte', async () => {
    // QEMU rounds block status to 512-byte sectors: a sector reported as a hole where part of it holds data would be skipped.
    const out = join(dir.path, 'bytes.raw');
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri('bytes'), out]);
    assert.ok((await readFile(out)).equals(await bytes.read(0, MiB)));
  });

  test('qemu-img convert onto the export, then qemu-img compare', async () => {
    const src = join(dir.path, 'src.raw');
    await runOk('qemu-img', ['create', '-f', 'raw', src, '16M']);
    await runOk('qemu-io', ['-f', 'raw', src, '-c', 'write -P 0x42 0 1M', '-c', 'write -P 0x99 5M 3M']);
    await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, uri('conv')]);
    const same = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, uri('conv')]);
    assert.equal(same.code, 0, same.stdout + same.stderr);
    const client = await NbdClient.connect({ path: socket }, { exportName: 'conv' });
    await client.write(7 * MiB, Buffer.from([1]));
    await client.disconnect();
    const differs = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, uri('conv')]);
    assert.equal(differs.code, 1, differs.stdout + differs.stderr);
  });

  test('qemu-io cannot write to a read-only export', async () => {
    const r = await run('qemu-io', ['-f', 'raw', uri('ro'), '-c', 'write -P 1 0 4k']);
    assert.match(r.stdout + r.stderr, /read.only|Permission denied|Operation not permitted/i);
    assert.ok((await readOnly.read(0, 4096)).equals(Buffer.alloc(4096)));
  });

  test('fio random read/write with crc32c verification', async () => {
    const r = await runFioVerify(uri('disk'), { name: 'nbd', timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    // libnbd prints a connection notice before fio's JSON.
    const job = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs[0];
    assert.equal(job.error, 0);
    assert.ok(job.write.io_bytes > 0 && job.read.io_bytes > 0);
  });
});
