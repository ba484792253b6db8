/**
 * Replica store ingest: journal records (writes of 64 KiB to 1 MiB at random
 * offsets, a flush record every few MiB) appended into the real ReplicaStore in
 * the sender's batches (1 MiB), each appended as it arrives while earlier ones
 * are still being stored, up to the sender's window (32 MiB); and the same
 * writes through the disk service's journal, streamed by the sender over TLS
 * on loopback into a replica store (uncompressed: the data is random), until
 * the last is acknowledged. Both against `dd oflag=direct` writing the same
 * number of bytes on the same file system. Prints the ratio and writes
 * bench/replica-ingest/results/latest.json.
 *
 * Usage: node bench/replica-ingest/run.ts [TOTAL_MiB=1024] [FLUSH_EVERY_MiB=8] [BATCH_MiB=1] [WINDOW_MiB=32]
 * The store lives under bench/replica-ingest/results/tmp (the repository's file system).
 */
import { execFile } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { JournalRecord } from '../../src/disk/index.ts';

const { JournaledBackend } = await import('../../src/disk/index.ts');
const { ReplicaStore } = await import('../../src/replica/index.ts');
const { Receiver, Sender } = await import('../../src/replication/index.ts');
const { hostIdentities, waitFor } = await import('../../src/testing/replication-test-fixture.ts');
const { createSparseImage } = await import('../../src/storage/index.ts');

async function sparseImage(path: string, size: number): Promise<string> {
  await createSparseImage(path, size);
  return path;
}

const run = promisify(execFile);
const MiB = 1 << 20;
const totalMiB = Number(process.argv[2] ?? 1024);
const flushEveryMiB = Number(process.argv[3] ?? 8);
const batchMiB = Number(process.argv[4] ?? 1);
const windowMiB = Number(process.argv[5] ?? 32);
const diskBytes = 16 * 1024 * MiB;
const HEADER_BYTES = 48;

const resultsDir = join(import.meta.dirname, 'results');
const work = join(resultsDir, 'tmp');
await rm(work, { recursive: true, force: true });
await mkdir(work, { recursive: true });

// A pool of random data, sliced per write: generating data is not what is measured.
const pool = randomFillSync(Buffer.allocUnsafe(32 * MiB));
let seed = 12345;
const rand = (n: number) => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
};

/** The records in appends of about `batchMiB`, generated up front. */
function makeBatches(): { batches: JournalRecord[][]; recordBytes: number; writes: number; flushes: number } {
  const batches: JournalRecord[][] = [];
  let batch: JournalRecord[] = [];
  let batchBytes = 0;
  let recordBytes = 0;
  let sinceFlush = 0;
  let seq = 1;
  let writes = 0;
  let flushes = 0;
  const push = (r: JournalRecord) => {
    const bytes = HEADER_BYTES + (r.data?.length ?? 0);
    batch.push(r);
    batchBytes += bytes;
    recordBytes += bytes;
    if (batchBytes >= batchMiB * MiB) {
      batches.push(batch);
      batch = [];
      batchBytes = 0;
    }
  };
  while (recordBytes < totalMiB * MiB) {
    const length = (16 + rand(241)) * 4096; // 64 KiB .. 1 MiB
    const offset = rand((diskBytes - length) / 4096) * 4096;
    const at = rand((pool.length - length) / 4096) * 4096;
    push({
      seq: seq++,
      timeMs: Date.now(),
      kind: 'write',
      offset,
      length,
      data: pool.subarray(at, at + length),
    });
    writes++;
    sinceFlush += length;
    if (sinceFlush >= flushEveryMiB * MiB) {
      push({ seq: seq++, timeMs: Date.now(), kind: 'flush', offset: 0, length: 0 });
      flushes++;
      sinceFlush = 0;
    }
  }
  if (batch.length > 0) batches.push(batch);
  return { batches, recordBytes, writes, flushes };
}

const { batches, recordBytes, writes, flushes } = makeBatches();
console.log(
  `${(recordBytes / MiB).toFixed(0)} MiB of records: ${writes} writes of 64 KiB-1 MiB, ${flushes} flushes ` +
    `(one every ${flushEveryMiB} MiB), ${batches.length} appends of ~${batchMiB} MiB`,
);

try {
  // The peer: the same number of bytes written sequentially with O_DIRECT, synced at the end.
  const ddMiB = Math.ceil(recordBytes / MiB);
  const ddStart = performance.now();
  await run('dd', [
    'if=/dev/zero',
    `of=${join(work, 'dd.out')}`,
    'bs=1M',
    `count=${ddMiB}`,
    'oflag=direct',
    'conv=fsync',
  ]);
  const ddSeconds = (performance.now() - ddStart) / 1000;
  await rm(join(work, 'dd.out'));
  const ddMBps = (ddMiB * MiB) / 1e6 / ddSeconds;
  console.log(`dd oflag=direct bs=1M: ${ddSeconds.toFixed(2)} s, ${ddMBps.toFixed(0)} MB/s`);

  const store = await ReplicaStore.open(join(work, 'store'));
  await store.ensureDisk('bench/ingest', diskBytes);
  // A replica takes records once a sync has set its base (an empty one here).
  await store.beginSync('bench/ingest', { id: 'initial', kind: 'initial', fromSeq: 1, regions: null });
  await store.completeSync('bench/ingest', 'initial', 0);
  // As the receiver hands them on: each batch as it arrives, up to the sender's window unacknowledged.
  const havenStart = performance.now();
  let durable = 0;
  const inFlight = new Set<Promise<void>>();
  for (const batch of batches) {
    const p: Promise<void> = store.append('bench/ingest', batch).then((seq) => {
      durable = Math.max(durable, seq);
      inFlight.delete(p);
    });
    inFlight.add(p);
    if (inFlight.size * batchMiB >= windowMiB) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  const havenSeconds = (performance.now() - havenStart) / 1000;
  const lastSeq = batches.at(-1)?.at(-1)?.seq ?? 0;
  if (durable !== lastSeq) throw new Error(`durable sequence ${durable}, expected ${lastSeq}`);
  await store.close();
  const havenMBps = recordBytes / 1e6 / havenSeconds;
  console.log(`haven replica store append: ${havenSeconds.toFixed(2)} s, ${havenMBps.toFixed(0)} MB/s`);

  // The same writes through the disk service's journal, streamed by the sender over TLS on
  // loopback to a receiver into another replica store: until the last record is acknowledged.
  const source = await JournaledBackend.open({
    imagePath: await sparseImage(join(work, 'source.img'), diskBytes),
    journalDir: join(work, 'journal'),
    journalCapacityBytes: 2 * totalMiB * MiB,
  });
  const streamStore = await ReplicaStore.open(join(work, 'stream-store'));
  const [primary, recovery] = await hostIdentities();
  const receiver = new Receiver({
    identity: recovery,
    sink: streamStore,
    allowedSenders: [primary.fingerprint],
    port: 0,
  });
  const { port } = await receiver.listen();
  const sender = new Sender({ identity: primary, compressionLevel: null });
  sender.addDisk({
    diskKey: 'bench/stream',
    source,
    receiver: { host: '127.0.0.1', port, fingerprint: recovery.fingerprint },
    statePath: join(work, 'sender-state.json'),
  });
  await waitFor(
    'the initial sync',
    () => sender.status('bench/stream').lastSync?.completed === true,
    600_000,
  );
  const streamStart = performance.now();
  for (const batch of batches) {
    for (const r of batch) {
      if (r.kind === 'write' && r.data !== undefined) await source.write(r.offset, r.data, { fua: false });
      else await source.flush();
    }
  }
  const lastStreamSeq = source.journal.status.writtenSeq;
  await waitFor(
    'the last record acknowledged',
    () => sender.status('bench/stream').lastAckedSeq >= lastStreamSeq,
    600_000,
  );
  const streamSeconds = (performance.now() - streamStart) / 1000;
  await sender.close();
  await receiver.close();
  await streamStore.close();
  await source.close();
  const streamMBps = recordBytes / 1e6 / streamSeconds;
  console.log(
    `haven disk service → sender → TLS → receiver → replica store: ${streamSeconds.toFixed(2)} s, ${streamMBps.toFixed(0)} MB/s`,
  );

  const ratio = havenMBps / ddMBps;
  console.log(
    `ratio stream / dd: ${(streamMBps / ddMBps).toFixed(2)}×; ratio store append / dd: ${ratio.toFixed(2)}× (goal ≥ 250 MB/s or ≥ 0.8×: ${havenMBps >= 250 || ratio >= 0.8 ? 'met' : 'not met'})`,
  );
  await writeFile(
    join(resultsDir, 'latest.json'),
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        params: {
          totalMiB,
          flushEveryMiB,
          batchMiB,
          windowMiB,
          recordBytes,
          writes,
          flushes,
          appends: batches.length,
        },
        dd: { seconds: ddSeconds, MBps: ddMBps },
        haven: { seconds: havenSeconds, MBps: havenMBps },
        stream: { seconds: streamSeconds, MBps: streamMBps, ratio: streamMBps / ddMBps },
        ratio,
        goalMet: havenMBps >= 250 || ratio >= 0.8,
      },
      null,
      2,
    )}\n`,
  );
} finally {
  await rm(work, { recursive: true, force: true });
}
