/**
 * Initial replication throughput: Haven's sender → receiver over TLS on
 * 127.0.0.1 (into the file-backed test sink and into the real replica store)
 * against `rsync --inplace` of the same image to a local directory (no ssh).
 * The image is half random data, half holes, in alternating 32 MiB stretches.
 *
 * Usage: node bench/replication/run.ts [SIZE_MiB=1024]
 */
process.env.UV_THREADPOOL_SIZE ??= '16';

import { execFile, spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const { JournaledBackend } = await import('../../src/disk/index.ts');
const { ReplicaStore } = await import('../../src/replica/index.ts');
const { Receiver, Sender } = await import('../../src/replication/index.ts');
const { hostIdentities, waitFor } = await import('../../src/testing/replication-test-fixture.ts');

const run = promisify(execFile);
const MiB = 1 << 20;
const sizeMiB = Number(process.argv[2] ?? 1024);
const size = sizeMiB * MiB;
const STRETCH = 32 * MiB;

const dir = await mkdtemp(join(tmpdir(), 'haven-bench-repl-'));
try {
  const imagePath = join(dir, 'source.img');
  const fh = await open(imagePath, 'w');
  await fh.truncate(size);
  const buf = Buffer.allocUnsafe(4 * MiB);
  for (let at = 0; at < size; at += 2 * STRETCH) {
    for (let o = at; o < Math.min(size, at + STRETCH); o += buf.length) {
      randomFillSync(buf);
      await fh.write(buf, 0, buf.length, o);
    }
  }
  await fh.datasync();
  await fh.close();
  const dataBytes = Math.ceil(size / (2 * STRETCH)) * STRETCH;
  console.log(`image: ${sizeMiB} MiB, ${dataBytes / MiB} MiB random data, the rest holes`);

  // The disk service scans the image for holes on first open (no allocation map yet).
  const source = await JournaledBackend.open({
    imagePath,
    journalDir: join(dir, 'journal'),
    journalCapacityBytes: 256 * MiB,
  });
  const [primary, recovery] = await hostIdentities();

  /** Replicates the image to a receiver on `port`; returns the seconds the initial sync took. */
  const haven = async (label: string, port: number) => {
    const sender = new Sender({ identity: primary, compressionLevel: process.env.NOZSTD ? null : 1 });
    const diskKey = `bench/${label.split(' ')[0]}`;
    const started = performance.now();
    sender.addDisk({
      diskKey,
      source,
      receiver: { host: '127.0.0.1', port, fingerprint: recovery.fingerprint },
      statePath: join(dir, `${label.split(' ')[0]}-state.json`),
    });
    await waitFor('the initial sync', () => sender.status(diskKey).lastSync?.completed === true, 600_000);
    const seconds = (performance.now() - started) / 1000;
    const report = sender.status(diskKey).lastSync;
    await sender.close();
    console.log(
      `haven → ${label}: ${seconds.toFixed(2)} s, ${(size / MiB / seconds).toFixed(0)} MiB/s of disk, ` +
        `${((report?.wireBytes ?? 0) / MiB).toFixed(0)} MiB on the wire`,
    );
    return seconds;
  };

  // The receiver runs in its own process, as it would on the recovery host.
  const identitiesPath = join(dir, 'identities.json');
  await writeFile(identitiesPath, JSON.stringify([primary, recovery]));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const child = spawn(
    process.execPath,
    [
      join(import.meta.dirname, '../../src/testing/replication-process.fixture.ts'),
      'receiver',
      join(dir, 'file-sink'),
      String(port),
      identitiesPath,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  const havenFile = await haven('file-sink (receiver process)', port);
  child.kill('SIGKILL');
  await rm(join(dir, 'file-sink'), { recursive: true, force: true });

  const store = await ReplicaStore.open(join(dir, 'store'));
  const receiver = new Receiver({
    identity: recovery,
    sink: store,
    allowedSenders: [primary.fingerprint],
    port: 0,
  });
  const havenStore = await haven('replica store (same process)', (await receiver.listen()).port);
  await receiver.close();
  await store.close();
  await rm(join(dir, 'store'), { recursive: true, force: true });
  await source.close();

  await mkdir(join(dir, 'rsync'));
  const rsyncStart = performance.now();
  await run('rsync', ['--inplace', imagePath, join(dir, 'rsync/')]);
  const rsyncSeconds = (performance.now() - rsyncStart) / 1000;
  const copied = await stat(join(dir, 'rsync', 'source.img'));
  console.log(
    `rsync --inplace: ${rsyncSeconds.toFixed(2)} s, ${(size / MiB / rsyncSeconds).toFixed(0)} MiB/s (${copied.size} bytes)`,
  );
  console.log(
    `ratio rsync time / haven time: file sink ${(rsyncSeconds / havenFile).toFixed(2)}×, ` +
      `replica store ${(rsyncSeconds / havenStore).toFixed(2)}×`,
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
