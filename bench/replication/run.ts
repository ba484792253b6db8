/**
 * Initial sync of one image, each copy ending durable on the destination:
 *
 * - Haven: sender → receiver in another process over TLS on 127.0.0.1, into
 *   the file-backed test sink and into the real replica store (as on a
 *   recovery host). Timed from adding the disk until the sender saw the sync
 *   acknowledged (the replica store makes it durable before acknowledging).
 * - `nbdcopy --flush` from `nbdkit -r file` (captive, over its socket) to a
 *   file: the NBD peer, sparse like Haven (holes stay holes).
 * - `rsync --inplace --fsync` to a local directory (no ssh).
 *
 * The image is half random data, half holes, in alternating 32 MiB stretches.
 * Checked: the replica store's replica equals the image, its base image holds
 * no more allocated bytes than the image's data, and holes went as zero ranges
 * (sync data bytes = the image's data).
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
import type { SyncReport } from '../../src/replication/index.ts';
import { writeResults } from '../write-results.ts';
import { checkReplica } from './check-replica.ts';
import { startReceiverProcess } from './replica-receiver.ts';

const { JournaledBackend } = await import('../../src/disk/index.ts');
const { Sender } = await import('../../src/replication/index.ts');
const { hostIdentities, waitFor } = await import('../../src/testing/replication-test-fixture.ts');

const run = promisify(execFile);
const MiB = 1 << 20;
const sizeMiB = Number(process.argv[2] ?? 1024);
const size = sizeMiB * MiB;
const STRETCH = 32 * MiB;
const NBDCOPY_GOAL = 0.8;

interface Measured {
  seconds: number;
  /** Bytes the destination file allocates (st_blocks × 512). */
  allocatedBytes?: number;
  sync?: SyncReport;
}

/** Runs a command and returns its wall time in seconds. */
async function timed(cmd: string, args: string[]): Promise<number> {
  const started = performance.now();
  await run(cmd, args, { maxBuffer: 16 * MiB });
  return (performance.now() - started) / 1000;
}

async function allocated(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

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
  const identitiesPath = join(dir, 'identities.json');
  await writeFile(identitiesPath, JSON.stringify([primary, recovery]));

  /** Replicates the image to a receiver on `port` until the initial sync is acknowledged. */
  const haven = async (label: string, port: number, check: boolean): Promise<Measured> => {
    const sender = new Sender({ identity: primary, compressionLevel: process.env.NOZSTD ? null : 1 });
    const diskKey = `bench/${label}`;
    try {
      const started = performance.now();
      sender.addDisk({
        diskKey,
        source,
        receiver: { host: '127.0.0.1', port, fingerprint: recovery.fingerprint },
        statePath: join(dir, `${label}-state.json`),
      });
      await waitFor('the initial sync', () => sender.status(diskKey).lastSync?.completed === true, 600_000);
      const seconds = (performance.now() - started) / 1000;
      const sync = sender.status(diskKey).lastSync as SyncReport;
      console.log(
        `haven → ${label}: ${seconds.toFixed(2)} s, ${(size / MiB / seconds).toFixed(0)} MiB/s of disk, ` +
          `${(sync.dataBytes / MiB).toFixed(0)} MiB of data sent, ${(sync.wireBytes / MiB).toFixed(0)} MiB on the wire`,
      );
      if (sync.dataBytes !== dataBytes) {
        throw new Error(`the sync sent ${sync.dataBytes} bytes of data, not the image's ${dataBytes}`);
      }
      if (check) await checkReplica(sender, diskKey, imagePath);
      return { seconds, sync };
    } finally {
      await sender.close();
    }
  };

  // The test sink: a plain file per disk, in a receiver process.
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
  let fileSink: Measured;
  try {
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    fileSink = await haven('file-sink', port, false);
  } finally {
    child.kill('SIGKILL');
  }
  await rm(join(dir, 'file-sink'), { recursive: true, force: true });

  // The real replica store, in a receiver process as on a recovery host.
  const receiver = await startReceiverProcess(join(dir, 'store'), identitiesPath);
  let store: Measured;
  try {
    store = await haven('replica-store', receiver.port, true);
  } finally {
    await receiver.stop();
  }
  const storeBase = join(dir, 'store', 'disks');
  const { stdout: bases } = await run('find', [storeBase, '-name', 'base.img']);
  const basePath = bases.trim().split('\n')[0] ?? '';
  store.allocatedBytes = await allocated(basePath);
  await rm(join(dir, 'store'), { recursive: true, force: true });
  await source.close();

  const nbdcopyDest = join(dir, 'nbdcopy.img');
  const nbdcopy: Measured = {
    seconds: await timed('nbdcopy', [
      '--flush',
      '--',
      '[',
      'nbdkit',
      '-r',
      'file',
      imagePath,
      ']',
      nbdcopyDest,
    ]),
  };
  nbdcopy.allocatedBytes = await allocated(nbdcopyDest);
  await run('cmp', [imagePath, nbdcopyDest]);
  await rm(nbdcopyDest);

  await mkdir(join(dir, 'rsync'));
  const rsync: Measured = {
    seconds: await timed('rsync', ['--inplace', '--fsync', imagePath, join(dir, 'rsync/')]),
  };
  rsync.allocatedBytes = await allocated(join(dir, 'rsync', 'source.img'));

  console.log('');
  const line = (name: string, m: Measured) =>
    console.log(
      `${name.padEnd(47)} ${m.seconds.toFixed(2).padStart(6)} s  ${(size / MiB / m.seconds).toFixed(0).padStart(5)} MiB/s of disk` +
        (m.allocatedBytes === undefined
          ? ''
          : `  destination allocates ${(m.allocatedBytes / MiB).toFixed(0)} MiB`),
    );
  line('haven → file sink (receiver process, TLS)', fileSink);
  line('haven → replica store (receiver process, TLS)', store);
  line('nbdcopy --flush from nbdkit file (unix socket)', nbdcopy);
  line('rsync --inplace --fsync (local pipe)', rsync);
  const vsNbdcopy = nbdcopy.seconds / store.seconds;
  console.log(
    `ratio peer time / haven time (replica store): nbdcopy ${vsNbdcopy.toFixed(2)}× ` +
      `(goal ≥ ${NBDCOPY_GOAL}×: ${vsNbdcopy >= NBDCOPY_GOAL ? 'ok' : 'MISS'}), rsync ${(rsync.seconds / store.seconds).toFixed(2)}×; ` +
      `file sink: nbdcopy ${(nbdcopy.seconds / fileSink.seconds).toFixed(2)}×, rsync ${(rsync.seconds / fileSink.seconds).toFixed(2)}×`,
  );
  // Slack for the file's own metadata blocks.
  if ((store.allocatedBytes ?? 0) > dataBytes + MiB) {
    throw new Error(`the replica allocates ${store.allocatedBytes} bytes for ${dataBytes} bytes of data`);
  }
  await writeResults(import.meta.dirname, {
    settings: { sizeBytes: size, dataBytes, stretchBytes: STRETCH },
    haven: { fileSink, replicaStore: store },
    nbdcopy,
    rsync,
    goals: { vsNbdcopy: { ratio: vsNbdcopy, goal: NBDCOPY_GOAL, met: vsNbdcopy >= NBDCOPY_GOAL } },
  });
} finally {
  await rm(dir, { recursive: true, force: true });
}
