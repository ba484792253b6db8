/**
 * The disk service with journaling on, against NBD clients nobody here wrote
 * (libnbd's nbdinfo and nbdcopy, qemu-io, qemu-img, fio; Debian: libnbd-bin,
 * qemu-utils, fio), and the journal each leaves behind.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { crc32 } from 'node:zlib';
import type { HavenError } from '../errors/index.ts';
import { hostDiskService } from '../host/host-disk-service.ts';
import { NbdClient } from '../nbd/index.ts';
import { createSparseImage } from '../storage/sparse-image.ts';
import { describeRecord, readJournal, replay } from '../testing/disk-service.fixture.ts';
import { nbdinfoMap, run, runFioVerify, runOk } from '../testing/nbd-test-fixture.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import { selfSignedCertificate } from '../testing/self-signed-certificate.ts';
import { DiskService } from './disk-service.ts';
import type { JournalRecord } from './journal-record.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

describe('DiskService against real NBD clients', () => {
  let root: string;
  let service: DiskService;
  let socket: string;
  /** Each export's image as it was when attached, to replay its journal onto. */
  const bases = new Map<string, Buffer>();
  const uri = (name: string) => service.info(name).uri;
  const tool = (cmd: string, args: string[], timeoutMs?: number) =>
    run(cmd, args, { cwd: root, ...(timeoutMs ? { timeoutMs } : {}) });
  const toolOk = (cmd: string, args: string[], timeoutMs?: number) =>
    runOk(cmd, args, { cwd: root, ...(timeoutMs ? { timeoutMs } : {}) });

  /** A sparse image, or one holding `base` (no allocation map: the service scans it). */
  async function attach(name: string, size: number, base?: Buffer): Promise<void> {
    const imagePath = join(root, `${name}.img`);
    if (base === undefined) await createSparseImage(imagePath, size);
    else await writeFile(imagePath, base);
    bases.set(name, base ?? Buffer.alloc(size));
    await service.attach(name, { imagePath, journalDir: join(root, `${name}.journal`) });
  }

  /** Replaying the export's whole journal onto its starting image gives the image. */
  async function assertJournalReplaysToImage(name: string): Promise<JournalRecord[]> {
    await service.backend(name).flush();
    const records = await readJournal(service.info(name).journalDir);
    assert.equal(records[0]?.seq, 1, 'the journal is complete');
    const image = await readFile(service.info(name).imagePath as string);
    const rebuilt = replay(bases.get(name) as Buffer, records);
    assert.ok(rebuilt.equals(image), `replaying the journal of '${name}' gives its image`);
    return records;
  }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'haven-disk-service-'));
    socket = join(root, 'nbd.sock');
    service = await DiskService.start({
      socket,
      listen: { host: '127.0.0.1', port: 0 },
      insecureListen: true,
    });
    await attach('sparse', 8 * MiB);
    await attach('copy', 64 * MiB);
    await attach('qio', 4 * MiB);
    await attach('conv', 16 * MiB, randomBytes(16 * MiB));
    await attach('fio', 16 * MiB, randomBytes(16 * MiB));
  });

  after(async () => {
    await service.close();
    await rm(root, { recursive: true, force: true });
  });

  test('nbdinfo: size, --list of the exports, --map with the holes of a sparse image', async () => {
    const info = JSON.parse(await toolOk('nbdinfo', ['--json', uri('sparse')])).exports[0];
    assert.equal(info['export-size'], 8 * MiB);
    assert.equal(info.can_flush, true);
    assert.equal(info.can_fua, true);
    assert.equal(info.can_zero, true);
    // The same export over TCP.
    const tcp = JSON.parse(await toolOk('nbdinfo', ['--json', service.info('sparse').uris.tcp ?? '']));
    assert.equal(tcp.exports[0]['export-size'], 8 * MiB);

    const listed = JSON.parse(await toolOk('nbdinfo', ['--list', '--json', `nbd+unix://?socket=${socket}`]));
    const names = listed.exports.map((e: { 'export-name': string }) => e['export-name']).sort();
    assert.deepEqual(names, ['conv', 'copy', 'fio', 'qio', 'sparse']);

    const client = await NbdClient.connect({ path: socket }, { exportName: 'sparse' });
    await client.write(MiB, Buffer.alloc(8192, 1));
    await client.write(3 * MiB + 4096, Buffer.alloc(4096, 2));
    await client.disconnect();
    const extents = await nbdinfoMap(uri('sparse'), { cwd: root });
    // Allocation is tracked in 64 KiB chunks.
    assert.deepEqual(extents, [
      [0, MiB, 3],
      [MiB, 64 * KiB, 0],
      [MiB + 64 * KiB, 2 * MiB - 64 * KiB, 3],
      [3 * MiB, 64 * KiB, 0],
      [3 * MiB + 64 * KiB, 5 * MiB - 64 * KiB, 3],
    ]);
    const records = await assertJournalReplaysToImage('sparse');
    assert.deepEqual(records.filter((r) => r.kind !== 'flush').map(describeRecord), [
      `write ${MiB} 8192 crc=${crc32(Buffer.alloc(8192, 1))}`,
      `write ${3 * MiB + 4096} 4096 crc=${crc32(Buffer.alloc(4096, 2))}`,
    ]);
  });

  test('nbdcopy: 64 MiB of random data in and back, byte for byte; the journal replays to the image', async () => {
    const src = join(root, 'random.bin');
    const back = join(root, 'back.bin');
    const data = randomBytes(64 * MiB);
    await writeFile(src, data);
    await toolOk('nbdcopy', [src, uri('copy')], 60_000);
    await toolOk('nbdcopy', [uri('copy'), back], 60_000);
    assert.ok((await readFile(back)).equals(data), 'copied back what was copied in');
    await rm(src);
    await rm(back);
    await assertJournalReplaysToImage('copy');
  });

  test('qemu-io: patterns, unaligned and zero writes; the journal holds exactly those writes, in order', async () => {
    const fill = (byte: number, length: number) => crc32(Buffer.alloc(length, byte));
    const script: Array<[string, string]> = [
      ['write -P 0xab 0 64k', `write 0 65536 crc=${fill(0xab, 65536)}`],
      ['write -P 0xcd 1000 3333', `write 1000 3333 crc=${fill(0xcd, 3333)}`],
      ['write -z 8192 4096', 'zero 8192 4096'],
      ['write -P 0x11 65535 2', `write 65535 2 crc=${fill(0x11, 2)}`],
      ['write -P 0x5a 1048577 131071', `write 1048577 131071 crc=${fill(0x5a, 131071)}`],
      ['discard 1114112 65536', 'trim 1114112 65536'],
      ['write -z -u 2097152 65536', 'zero 2097152 65536'],
      ['write -P 0x77 4194303 1', `write 4194303 1 crc=${fill(0x77, 1)}`],
      ['flush', 'flush'],
    ];
    const reads = [
      'read -P 0xab 0 1000',
      'read -P 0xcd 1000 3333',
      'read -P 0 8192 4096',
      'read -P 0x11 65535 2',
      'read -P 0x5a 1048577 65535',
      'read -P 0 1114112 65536',
      'read -P 0x77 4194303 1',
    ];
    const args = ['-f', 'raw', uri('qio')];
    for (const c of [...script.map(([cmd]) => cmd), ...reads]) args.push('-c', c);
    const r = await tool('qemu-io', args);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /Pattern verification failed|error|failed/i);
    const wrong = await tool('qemu-io', ['-f', 'raw', uri('qio'), '-c', 'read -P 0xee 1000 3333']);
    assert.match(wrong.stdout + wrong.stderr, /Pattern verification failed/);

    const records = await assertJournalReplaysToImage('qio');
    const described = records.map(describeRecord);
    const expected = script.map(([, record]) => record);
    assert.deepEqual(described.slice(0, expected.length), expected);
    // qemu flushes again when it closes the disk (and our own assert flushed): nothing else follows.
    assert.ok(
      described.slice(expected.length).every((d) => d === 'flush'),
      `only flushes follow: ${described.slice(expected.length).join('; ')}`,
    );
    assert.deepEqual(
      records.map((rec) => rec.seq),
      records.map((_, i) => i + 1),
      'sequence numbers count up from 1 with no gap',
    );
  });

  test('qemu-img convert onto the export, qemu-img compare; the journal replays to the image', async () => {
    const src = join(root, 'src.raw');
    await toolOk('qemu-img', ['create', '-f', 'raw', src, '16M']);
    await toolOk('qemu-io', ['-f', 'raw', src, '-c', 'write -P 0x42 0 1M', '-c', 'write -P 0x99 5M 3M']);
    await toolOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, uri('conv')]);
    const same = await tool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, uri('conv')]);
    assert.equal(same.code, 0, same.stdout + same.stderr);
    await assertJournalReplaysToImage('conv');
    const client = await NbdClient.connect({ path: socket }, { exportName: 'conv' });
    await client.write(7 * MiB, Buffer.from([1]));
    await client.disconnect();
    const differs = await tool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, uri('conv')]);
    assert.equal(differs.code, 1, differs.stdout + differs.stderr);
    await assertJournalReplaysToImage('conv');
    await rm(src);
  });

  test('fio random read/write with crc32c verification; the journal replays to the image', async () => {
    const r = await runFioVerify(uri('fio'), { name: 'disk-service', timeoutMs: 60_000, cwd: root });
    assert.equal(r.code, 0, r.stderr);
    const job = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs[0];
    assert.equal(job.error, 0);
    assert.ok(job.write.io_bytes > 0 && job.read.io_bytes > 0);
    const records = await assertJournalReplaysToImage('fio');
    const written = records.filter((rec) => rec.kind === 'write').reduce((n, rec) => n + rec.length, 0);
    assert.equal(written, job.write.io_bytes, 'every byte fio wrote is in the journal, once');
  });
});

describe('DiskService exports, markers and overflow', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'haven-disk-service-'));
  });
  after(() => rm(root, { recursive: true, force: true }));

  test('attach and detach at runtime; refusals name the export', async () => {
    const service = await DiskService.start({ socket: join(root, 'a.sock') });
    try {
      const image = join(root, 'a.img');
      await createSparseImage(image, MiB);
      const info = await service.attach('a', { imagePath: image });
      assert.equal(info.uri, `nbd+unix:///a?socket=${join(root, 'a.sock')}`);
      assert.equal(info.journalDir, `${image}.journal`);
      await assert.rejects(service.attach('a', { imagePath: image }), { code: 'conflict' });
      await assert.rejects(service.attach('b', { imagePath: image }), { code: 'conflict' });
      await assert.rejects(service.attach('bad name', { imagePath: image }), { code: 'validation_failed' });
      await assert.rejects(service.attach('c', { imagePath: join(root, 'none.img') }), {
        code: 'not_found',
      });

      const client = await NbdClient.connect({ path: join(root, 'a.sock') }, { exportName: 'a' });
      await client.write(0, Buffer.alloc(4096, 7));
      await service.detach('a');
      // Detaching ends the export's connections and it is no longer offered.
      await assert.rejects(client.read(0, 512));
      client.destroy();
      await assert.rejects(NbdClient.connect({ path: join(root, 'a.sock') }, { exportName: 'a' }));
      assert.throws(() => service.journalStatus('a'), { code: 'not_found' });
      // A detached image can be attached again, and holds what was written.
      await service.attach('a2', { imagePath: image });
      const again = await NbdClient.connect({ path: join(root, 'a.sock') }, { exportName: 'a2' });
      assert.ok((await again.read(0, 4096)).equals(Buffer.alloc(4096, 7)));
      await again.disconnect();
      const status = service.journalStatus('a2');
      assert.equal(status.mode, 'journal');
      assert.equal(status.resyncRequired, false);
      assert.equal(status.nextSeq, 3, 'the write and the detach flush are journaled');
      assert.ok(status.usedBytes > 4096);
    } finally {
      await service.close();
    }
    await assert.rejects(DiskService.start({}), { code: 'validation_failed' });
  });

  test('TLS on TCP (nbds://, STARTTLS required), the Unix socket stays plain', async () => {
    const key = join(root, 'server-key.pem');
    const cert = join(root, 'ca-cert.pem');
    // libnbd looks for the CA as ca-cert.pem in the tls-certificates directory.
    await selfSignedCertificate(key, cert);
    const socket = join(root, 't.sock');
    const service = await DiskService.start({
      socket,
      listen: { host: '127.0.0.1', port: 0 },
      tls: { key: await readFile(key), cert: await readFile(cert), required: true },
      insecureListen: true,
    });
    try {
      await createSparseImage(join(root, 't.img'), MiB);
      const info = await service.attach('t', { imagePath: join(root, 't.img') });
      const port = service.addresses.tcp?.port;
      assert.equal(info.uris.tcp, `nbds://127.0.0.1:${port}/t`);
      const tcp = { host: '127.0.0.1', port: port ?? 0 };
      const secure = await NbdClient.connect(tcp, { exportName: 't', tls: { ca: await readFile(cert) } });
      await secure.write(0, Buffer.from('over tls'));
      await secure.disconnect();
      await assert.rejects(NbdClient.connect(tcp, { exportName: 't' }), { code: 'forbidden' });
      const out = JSON.parse(
        await runOk('nbdinfo', ['--json', `${info.uris.tcp}?tls-certificates=${root}`], { cwd: root }),
      );
      assert.equal(out.exports[0]['export-size'], MiB);
      const plain = await NbdClient.connect({ path: socket }, { exportName: 't' });
      assert.equal((await plain.read(0, 8)).toString(), 'over tls');
      await plain.disconnect();
    } finally {
      await service.close();
    }
  });

  test('a marker across disks is one consistent cut of dependent writes', async () => {
    const socket = join(root, 'm.sock');
    const service = await DiskService.start({ socket });
    try {
      for (const name of ['ma', 'mb']) {
        await createSparseImage(join(root, `${name}.img`), 4 * MiB);
        await service.attach(name, { imagePath: join(root, `${name}.img`) });
      }
      const a = await NbdClient.connect({ path: socket }, { exportName: 'ma' });
      const b = await NbdClient.connect({ path: socket }, { exportName: 'mb' });
      // Each write to B is issued only after the write to A before it was acknowledged.
      let stop = false;
      const chain = (async () => {
        for (let i = 0; !stop; i++) {
          const at = (i % 512) * 4096;
          await a.write(at, Buffer.alloc(4096, i & 0xff));
          await b.write(at, Buffer.alloc(4096, i & 0xff));
        }
      })();
      const markers: JournalRecord[][] = [];
      for (let m = 0; m < 5; m++) {
        await new Promise((r) => setTimeout(r, 20));
        markers.push(
          await service.insertMarkers(['ma', 'mb'], { type: 'group', id: `g${m}`, label: 'test' }),
        );
      }
      await service.insertMarker('ma', { type: 'app-consistent', id: 'app1' });
      stop = true;
      await chain;
      await a.disconnect();
      await b.disconnect();

      const recA = await readJournal(service.info('ma').journalDir);
      const recB = await readJournal(service.info('mb').journalDir);
      for (const [m, [markA, markB]] of markers.entries()) {
        assert.deepEqual(markA?.marker, { type: 'group', id: `g${m}`, label: 'test' });
        const before = (records: JournalRecord[], mark: JournalRecord | undefined) =>
          records.filter((r) => r.kind === 'write' && r.seq < (mark?.seq ?? 0)).length;
        const writesA = before(recA, markA);
        const writesB = before(recB, markB);
        assert.ok(writesA > 0, 'writes were going on');
        // B's i-th write depends on A's i-th: a cut holding it must hold A's (and not more than one more).
        assert.ok(writesA === writesB || writesA === writesB + 1, `marker g${m}: A ${writesA}, B ${writesB}`);
        // The marker follows a flush: a crash-consistent boundary on every disk.
        for (const [records, mark] of [
          [recA, markA],
          [recB, markB],
        ] as const) {
          const prior = records.filter((r) => r.seq < (mark?.seq ?? 0)).at(-1);
          assert.equal(prior?.kind, 'flush');
        }
      }
      assert.deepEqual(recA.find((r) => r.marker?.id === 'app1')?.marker, {
        type: 'app-consistent',
        id: 'app1',
      });
      await assert.rejects(service.insertMarker('ma', { type: 'resync' as 'group', id: 'x' }), {
        code: 'validation_failed',
      });
      await assert.rejects(service.insertMarker('nope', { type: 'group', id: 'x' }), { code: 'not_found' });
    } finally {
      await service.close();
    }
  });

  test('journal overflow: the service keeps answering, every written region is dirty, also after a restart', async () => {
    const socket = join(root, 'o.sock');
    const imagePath = join(root, 'o.img');
    const journalDir = join(root, 'o.journal');
    const size = 8 * MiB;
    await createSparseImage(imagePath, size);
    const attachOptions = {
      imagePath,
      journalDir,
      journalCapacityBytes: 256 * KiB,
      journalSegmentBytes: 64 * KiB,
    };
    let service = await DiskService.start({ socket });
    await service.attach('o', attachOptions);
    const client = await NbdClient.connect({ path: socket }, { exportName: 'o' });
    const rnd = new SeededRandom(7);
    const model = Buffer.alloc(size);
    const writes: Array<{ offset: number; length: number; crc: number | null }> = [];
    for (let round = 0; round < 20; round++) {
      const batch: Promise<void>[] = [];
      for (let i = 0; i < 10; i++) {
        const length = rnd.int(1, 40 * KiB);
        const offset = rnd.int(0, size - length);
        if (rnd.next() < 0.15) {
          model.fill(0, offset, offset + length);
          writes.push({ offset, length, crc: null });
          batch.push(client.writeZeroes(offset, length));
        } else {
          const data = rnd.bytes(length);
          data.copy(model, offset);
          writes.push({ offset, length, crc: crc32(data) });
          batch.push(client.write(offset, data));
        }
      }
      await Promise.all(batch);
      await client.flush();
    }
    // The machine was never stopped: everything it wrote reads back.
    assert.ok((await client.read(0, size)).equals(model), 'the disk holds every write');
    await client.disconnect();

    const check = async (svc: DiskService) => {
      const status = svc.journalStatus('o');
      assert.equal(status.mode, 'bitmap');
      assert.equal(status.resyncRequired, true);
      assert.ok(status.usedBytes <= 256 * KiB);
      assert.ok(status.dirtyRegions > 0 && status.dirtyBytes > 0);
      const dirty = svc.dirtyRegions('o');
      const journaled = new Set(
        (await readJournal(journalDir))
          .filter((r) => r.kind === 'write' || r.kind === 'zero')
          .map((r) => `${r.offset} ${r.length} ${r.data === undefined ? null : crc32(r.data)}`),
      );
      const covered = (offset: number, length: number) =>
        dirty.some((d) => d.offset <= offset && offset + length <= d.offset + d.length);
      let inBitmap = 0;
      for (const w of writes) {
        if (journaled.has(`${w.offset} ${w.length} ${w.crc}`)) continue;
        inBitmap++;
        assert.ok(
          covered(w.offset, w.length),
          `write at ${w.offset} (+${w.length}) is neither journaled nor dirty`,
        );
      }
      assert.ok(inBitmap > writes.length / 2, 'most writes came after the overflow');
      // Not grossly more: every dirty 64 KiB region holds some write.
      for (const d of dirty) {
        for (let at = d.offset; at < d.offset + d.length; at += 64 * KiB) {
          assert.ok(
            writes.some((w) => w.offset < at + 64 * KiB && at < w.offset + w.length),
            `region at ${at} is dirty but nothing was written there`,
          );
        }
      }
      await assert.rejects(svc.insertMarker('o', { type: 'group', id: 'full' }), {
        code: 'operation_not_allowed',
      });
      return dirty;
    };
    const dirtyBefore = await check(service);
    await service.close();

    service = await DiskService.start({ socket });
    try {
      await service.attach('o', attachOptions);
      assert.deepEqual(await check(service), dirtyBefore, 'the bitmap survives a restart');
      const again = await NbdClient.connect({ path: socket }, { exportName: 'o' });
      assert.ok((await again.read(0, size)).equals(model));
      await again.disconnect();
    } finally {
      await service.close();
    }
  });

  test("the host agent's disk operations", async () => {
    const service = await DiskService.start({ socket: join(root, 'h.sock') });
    const disk = hostDiskService(service, {
      dataDir: join(root, 'host-data'),
      journalCapacityBytes: 64 * MiB,
    });
    try {
      const source = join(root, 'vm1-root.img');
      const exp = await disk.attach({ machineId: 'vm1', diskId: 'root', source, sizeBytes: 2 * MiB });
      assert.equal(exp.nbdUri, `nbd+unix:///vm1.root?socket=${join(root, 'h.sock')}`);
      assert.equal(exp.sizeBytes, 2 * MiB);
      await disk.attach({
        machineId: 'vm1',
        diskId: 'data',
        source: join(root, 'vm1-data.img'),
        sizeBytes: MiB,
      });
      await assert.rejects(
        disk.attach({ machineId: 'vm2', diskId: 'root', source, sizeBytes: MiB }),
        (e: HavenError) => e.code === 'conflict' && /2097152 bytes/.test(e.message),
      );
      await assert.rejects(disk.attach({ machineId: 'vm.2', diskId: 'x', source, sizeBytes: MiB }), {
        code: 'validation_failed',
      });
      assert.deepEqual((await disk.list({ machineId: 'vm1' })).map((d) => d.diskId).sort(), ['data', 'root']);
      assert.deepEqual(await disk.list({ machineId: 'vm2' }), []);

      const client = await NbdClient.connect({ path: join(root, 'h.sock') }, { exportName: 'vm1.root' });
      await client.write(0, Buffer.alloc(4096, 1));
      await client.disconnect();
      const status = await disk.journalStatus({ machineId: 'vm1' });
      const root1 = status.disks.find((d) => d.diskId === 'root');
      assert.ok(root1 !== undefined && root1.pendingBytes > 4096);
      assert.ok(root1.lastWriteAt !== null && root1.oldestPendingAt !== null);
      assert.equal(status.disks.find((d) => d.diskId === 'data')?.lastWriteAt, null);

      const point = await disk.insertMarker({
        machineIds: ['vm1'],
        type: 'app-consistent',
        groupPointId: 'gp-1',
      });
      assert.equal(point.markerId, 'gp-1');
      for (const diskId of ['root', 'data']) {
        const records = await readJournal(join(root, 'host-data', 'journals', 'vm1', diskId));
        assert.deepEqual(records.at(-1)?.marker, {
          type: 'app-consistent',
          id: 'gp-1',
          label: 'app-consistent group gp-1',
          groupPointId: 'gp-1',
        });
      }
      await assert.rejects(
        disk.insertMarker({ machineIds: ['vm9'], type: 'crash-consistent', groupPointId: null }),
        { code: 'not_found' },
      );
      await disk.detach({ machineId: 'vm1', diskId: 'data' });
      assert.deepEqual(
        (await disk.list()).map((d) => d.diskId),
        ['root'],
      );
    } finally {
      await service.close();
    }
  });
});
