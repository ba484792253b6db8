/**
 * Resync of a few diverged blocks: an image of random data (default 2 GiB),
 * replicated in full to the real replica store (receiver in another process,
 * TLS on loopback), then `--percent` (default 1%) of its 64 KiB blocks changed
 * on the primary side, twice:
 *
 * - bitmap resync: the changes go through the disk's journaled backend while
 *   the sender is paused; the journal is kept tiny (512 KiB) so that it
 *   overflows into its dirty bitmap at once, as after a long link outage. Timed
 *   from resuming the sender until the replica acknowledged everything.
 * - hash-compare resync: other blocks are changed in the image file behind the
 *   journal's back (the knowledge of what changed is lost); timed from the
 *   request until the replica acknowledged everything.
 *
 * Peer: `rsync --inplace --no-whole-file --ignore-times` (its delta
 * algorithm, local rsync's two processes over a pipe; without
 * `--ignore-times` it may skip a file whose size and mtime look unchanged)
 * from the same image onto a copy of it taken before the second change, so it faces the same diverged blocks as the
 * hash-compare resync. "Diverged bytes" are the bytes of the changed 64 KiB
 * blocks. Bytes sent: Haven's wire bytes (TLS payload: frames after
 * compression, hash requests included); rsync's "Total bytes sent".
 * Checked: the hash compare finds exactly its own changed blocks (so the
 * bitmap resync left nothing behind), and at the end both rsync's copy and
 * the replica equal the image.
 *
 * Usage: node bench/resync/run.ts [--size 2G] [--percent 1] [--seed 1]
 */
process.env.UV_THREADPOOL_SIZE ??= '16';

import { execFile } from 'node:child_process';
import { randomBytes, randomFillSync } from 'node:crypto';
import { copyFile, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import type { DiskReplicationStatus, SyncReport } from '../../src/replication/index.ts';
import { checkReplica } from '../replication/check-replica.ts';
import { startReceiverProcess } from '../replication/replica-receiver.ts';
import { writeResults } from '../write-results.ts';

const { JournaledBackend } = await import('../../src/disk/index.ts');
const { Sender } = await import('../../src/replication/index.ts');
const { parseSize } = await import('../../src/text/human-units.ts');
const { hostIdentities, waitFor } = await import('../../src/testing/replication-test-fixture.ts');
const { SeededRandom } = await import('../../src/testing/seeded-random.ts');

const run = promisify(execFile);
const MiB = 2 ** 20;
const BLOCK = 64 * 1024;
const SPEED_GOAL = 20;
const BYTES_GOAL = 1.05;

const { values } = parseArgs({
  strict: true,
  options: {
    size: { type: 'string', default: '2G' },
    percent: { type: 'string', default: '1' },
    seed: { type: 'string', default: '1' },
  },
});
const args = { size: parseSize(values.size), percent: Number(values.percent), seed: Number(values.seed) };
const blocks = Math.floor(args.size / BLOCK);
const changedPerSide = Math.max(1, Math.round((blocks * args.percent) / 100));
const divergedBytes = changedPerSide * BLOCK;
const rnd = new SeededRandom(args.seed);

/** `changedPerSide` distinct block numbers, in ascending order. */
function pickBlocks(): number[] {
  const picked = new Set<number>();
  while (picked.size < changedPerSide) picked.add(rnd.int(0, blocks - 1));
  return [...picked].sort((a, b) => a - b);
}

interface Measured {
  seconds: number;
  bytesSent: number;
}

const dir = await mkdtemp(join(tmpdir(), 'haven-bench-resync-'));
try {
  const imagePath = join(dir, 'source.img');
  const fh = await open(imagePath, 'w');
  const buf = Buffer.allocUnsafe(4 * MiB);
  for (let at = 0; at < args.size; at += buf.length) {
    randomFillSync(buf);
    await fh.write(buf, 0, Math.min(buf.length, args.size - at), at);
  }
  await fh.close();
  console.log(
    `image ${args.size / MiB} MiB of random data; ${changedPerSide} of ${blocks} 64 KiB blocks changed per resync ` +
      `(${args.percent}%): diverged bytes ${(divergedBytes / MiB).toFixed(2)} MiB`,
  );

  const [primary, recovery] = await hostIdentities();
  const identitiesPath = join(dir, 'identities.json');
  await writeFile(identitiesPath, JSON.stringify([primary, recovery]));
  const receiver = await startReceiverProcess(join(dir, 'store'), identitiesPath);
  const source = await JournaledBackend.open({
    imagePath,
    journalDir: join(dir, 'journal'),
    journalCapacityBytes: 512 * 1024,
  });
  const sender = new Sender({ identity: primary });
  const diskKey = 'bench/resync';
  let bitmap: Measured & { sync: SyncReport };
  let hash: Measured & { sync: SyncReport };
  try {
    sender.addDisk({
      diskKey,
      source,
      receiver: { host: '127.0.0.1', port: receiver.port, fingerprint: recovery.fingerprint },
      statePath: join(dir, 'sender-state.json'),
    });
    const status = () => sender.status(diskKey);
    const caughtUp = (st: DiskReplicationStatus) =>
      st.state === 'streaming' && !st.resyncRequired && st.lastAckedSeq >= source.journal.status.writtenSeq;
    /** Waits for a sync of `kind` after `before` to complete and the replica to hold every record. */
    const syncDone = async (kind: SyncReport['kind'], before: SyncReport | null): Promise<SyncReport> => {
      await waitFor(
        `the ${kind} sync`,
        () => {
          const st = status();
          return (
            st.lastSync !== before && st.lastSync?.kind === kind && st.lastSync.completed && caughtUp(st)
          );
        },
        1_800_000,
        () => JSON.stringify(status()),
      );
      return status().lastSync as SyncReport;
    };

    const t0 = performance.now();
    await syncDone('initial', null);
    const initialSyncSeconds = (performance.now() - t0) / 1000;
    console.log(`initial sync (for information): ${initialSyncSeconds.toFixed(1)} s`);

    // Bitmap resync: the changes overflow the paused sender's journal into the dirty bitmap.
    sender.pause(diskKey);
    await waitFor('the pause', () => status().state === 'paused');
    for (const b of pickBlocks()) await source.write(b * BLOCK, randomBytes(BLOCK), { fua: false });
    await source.flush();
    if (source.journal.mode !== 'bitmap') throw new Error('the journal did not overflow into its bitmap');
    {
      const before = status();
      const started = performance.now();
      sender.resume(diskKey);
      const sync = await syncDone('bitmap', before.lastSync);
      bitmap = {
        seconds: (performance.now() - started) / 1000,
        bytesSent: status().wireBytesSent - before.wireBytesSent,
        sync,
      };
    }

    // rsync's destination: the image as the replica holds it now.
    const rsyncDest = join(dir, 'rsync-dest.img');
    await copyFile(imagePath, rsyncDest);

    // Hash-compare resync: changes in the image file that the journal never saw.
    {
      const image = await open(imagePath, 'r+');
      for (const b of pickBlocks()) await image.write(randomBytes(BLOCK), 0, BLOCK, b * BLOCK);
      await image.datasync();
      await image.close();
      const before = status();
      const started = performance.now();
      sender.requestResync(diskKey, 'hash');
      const sync = await syncDone('hash', before.lastSync);
      hash = {
        seconds: (performance.now() - started) / 1000,
        bytesSent: status().wireBytesSent - before.wireBytesSent,
        sync,
      };
    }
    if (hash.sync.blocksDiffering !== changedPerSide) {
      throw new Error(
        `hash compare found ${hash.sync.blocksDiffering} differing blocks, not ${changedPerSide}`,
      );
    }

    const started = performance.now();
    const { stdout } = await run('rsync', [
      '--inplace',
      '--no-whole-file',
      '--ignore-times',
      '--stats',
      imagePath,
      rsyncDest,
    ]);
    const rsync: Measured = {
      seconds: (performance.now() - started) / 1000,
      bytesSent: Number(/Total bytes sent: ([\d,]+)/.exec(stdout)?.[1]?.replaceAll(',', '') ?? Number.NaN),
    };
    await run('cmp', [imagePath, rsyncDest]);
    await checkReplica(sender, diskKey, imagePath);

    const line = (name: string, m: Measured, extra = '') =>
      console.log(
        `${name.padEnd(34)} ${m.seconds.toFixed(2).padStart(8)} s  ${(m.bytesSent / MiB).toFixed(2).padStart(9)} MiB sent ` +
          `(${(m.bytesSent / divergedBytes).toFixed(3)}× diverged)${extra}`,
      );
    console.log('');
    line(
      'haven bitmap resync',
      bitmap,
      `  dirty regions ${(bitmap.sync.regionBytes / MiB).toFixed(2)} MiB, sync ${bitmap.sync.durationMs} ms`,
    );
    line('haven hash-compare resync', hash, `  ${hash.sync.blocksDiffering} blocks differed`);
    line('rsync --inplace --no-whole-file -I', rsync);
    const bitmapSpeed = rsync.seconds / bitmap.seconds;
    const bitmapBytes = bitmap.bytesSent / divergedBytes;
    console.log(
      `ratio rsync time / haven time: bitmap ${bitmapSpeed.toFixed(1)}× (goal ≥ ${SPEED_GOAL}×: ${bitmapSpeed >= SPEED_GOAL ? 'ok' : 'MISS'}), ` +
        `hash compare ${(rsync.seconds / hash.seconds).toFixed(2)}×`,
    );
    console.log(
      `bytes sent / diverged bytes: bitmap ${bitmapBytes.toFixed(3)} (goal ≤ ${BYTES_GOAL}: ${bitmapBytes <= BYTES_GOAL ? 'ok' : 'MISS'}), ` +
        `hash compare ${(hash.bytesSent / divergedBytes).toFixed(3)}, rsync ${(rsync.bytesSent / divergedBytes).toFixed(3)}`,
    );

    await writeResults(import.meta.dirname, {
      settings: { ...args, blockBytes: BLOCK, changedBlocks: changedPerSide },
      divergedBytes,
      initialSyncSeconds,
      bitmap,
      hash,
      rsync,
      goals: {
        bitmapSpeedup: { ratio: bitmapSpeed, goal: SPEED_GOAL, met: bitmapSpeed >= SPEED_GOAL },
        bitmapBytes: { ratio: bitmapBytes, goal: BYTES_GOAL, met: bitmapBytes <= BYTES_GOAL },
      },
    });
  } finally {
    await sender.close();
    await source.close();
    await receiver.stop();
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
