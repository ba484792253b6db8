/**
 * Sustained churn: fio writes at a fixed rate through the disk service (a
 * real NBD export on a unix socket, `DiskService` with its default journal
 * capacity) while the sender replicates over TLS on loopback to a receiver in
 * another process, into the real replica store. Each rate starts from a fresh
 * sparse image, journal and store (so one rate's backlog does not spill into
 * the next) and runs for `--seconds`; then the backlog drains.
 *
 * Every second: RPO = the age of the oldest write the replica has not
 * acknowledged, from the sender's status (0 when it has acknowledged every
 * journaled record; else now − the journal time of the newest acknowledged
 * record, as the writer never pauses). Percentiles cover the writer's run and
 * the drain after it; the journal's peak use shows how far trimming lagged.
 * The figure is the highest rate reached (≥ 0.9× asked) with RPO p99 ≤ 5 s
 * and no journal overflow; goal ≥ 100 MB/s. Flat out (no
 * rate) is reported for information, with the same fio against `nbdkit file`
 * (no journal, no replication) as the ceiling of the writer on this machine.
 *
 * Usage: node bench/churn/run.ts [--seconds 120] [--rates 25,50,100,150] [--no-flat-out]
 *          [--image-size 2G] [--bs 64k] [--iodepth 16] [--flush-every 0] [--drain-seconds 120]
 *          [--verify]
 *
 * MB are 10^6 bytes. fio writes random 64 KiB blocks with fresh random
 * (incompressible) contents; `--flush-every N` makes it send a FLUSH every N
 * writes (default none: the disk service never flushes). `--verify` checks
 * after each drained rate that the replica equals the image (not timed).
 */
process.env.UV_THREADPOOL_SIZE ??= '16';

import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { JournaledBackend } from '../../src/disk/index.ts';
import { checkReplica } from '../replication/check-replica.ts';
import { startReceiverProcess } from '../replication/replica-receiver.ts';
import { writeResults } from '../write-results.ts';

const { DiskService } = await import('../../src/disk/index.ts');
const { Sender } = await import('../../src/replication/index.ts');
const { createSparseImage } = await import('../../src/storage/index.ts');
const { parseSize } = await import('../../src/text/human-units.ts');
const { hostIdentities, waitFor } = await import('../../src/testing/replication-test-fixture.ts');

const MB = 1e6;
const RPO_GOAL_S = 5;
const RATE_GOAL_MBPS = 100;
const EXPORT = 'churn';

interface Args {
  seconds: number;
  rates: number[];
  flatOut: boolean;
  imageSize: number;
  bs: string;
  iodepth: number;
  flushEvery: number;
  drainSeconds: number;
  /** After each drained rate, check the replica equals the image. */
  verify: boolean;
}

function parseArguments(argv: string[]): Args {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      seconds: { type: 'string', default: '120' },
      rates: { type: 'string', default: '25,50,100,150' },
      'no-flat-out': { type: 'boolean', default: false },
      'image-size': { type: 'string', default: '2G' },
      bs: { type: 'string', default: '64k' },
      iodepth: { type: 'string', default: '16' },
      'flush-every': { type: 'string', default: '0' },
      'drain-seconds': { type: 'string', default: '120' },
      verify: { type: 'boolean', default: false },
    },
  });
  return {
    seconds: Number(values.seconds),
    rates: values.rates.split(',').map(Number),
    flatOut: !values['no-flat-out'],
    imageSize: parseSize(values['image-size']),
    bs: values.bs,
    iodepth: Number(values.iodepth),
    flushEvery: Number(values['flush-every']),
    drainSeconds: Number(values['drain-seconds']),
    verify: values.verify,
  };
}

interface FioResult {
  mbps: number;
  bytes: number;
}

/** Runs fio's nbd engine against `uri` for `seconds`; `rateMBps` null: as fast as it goes. */
async function fio(args: Args, uri: string, rateMBps: number | null, cwd: string): Promise<FioResult> {
  const fioArgs = [
    '--name=churn',
    '--ioengine=nbd',
    `--uri=${uri}`,
    '--rw=randwrite',
    `--bs=${args.bs}`,
    `--iodepth=${args.iodepth}`,
    '--refill_buffers',
    '--time_based',
    `--runtime=${args.seconds}`,
    '--verify_state_save=0',
    '--output-format=json',
    ...(rateMBps === null ? [] : [`--rate=${Math.round(rateMBps * MB)}`]),
    ...(args.flushEvery > 0 ? [`--fsync=${args.flushEvery}`] : []),
  ];
  const child = spawn('fio', fioArgs, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => err.push(b));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  const stdout = Buffer.concat(out).toString();
  if (code !== 0) throw new Error(`fio failed (${code}): ${Buffer.concat(err).toString().slice(0, 2000)}`);
  const job = (
    JSON.parse(stdout.slice(stdout.indexOf('{'))) as {
      jobs: Array<{ write: { bw_bytes: number; io_bytes: number } }>;
    }
  ).jobs[0];
  if (job === undefined) throw new Error('fio printed no job');
  return { mbps: job.write.bw_bytes / MB, bytes: job.write.io_bytes };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

interface RateResult {
  label: string;
  targetMBps: number | null;
  achievedMBps: number;
  writtenBytes: number;
  rpo: { p50: number; p99: number; max: number; samples: number };
  /** Seconds from the writer's end until the replica acknowledged everything; null: not within --drain-seconds. */
  drainSeconds: number | null;
  wireBytes: number;
  /** Most bytes the journal held at a sample: what the sender had not trimmed yet. */
  journalPeakBytes: number;
  overflowed: boolean;
  /** CPU seconds per second of the run (1 = one core): the disk service + sender process, the receiver process. */
  cpu: { host: number; receiver: number };
  met: boolean;
}

/** One rate from a fresh image, journal and replica store. */
async function runRate(
  args: Args,
  scratch: string,
  identitiesPath: string,
  targetMBps: number | null,
): Promise<RateResult> {
  const label = targetMBps === null ? 'flat out' : `${targetMBps} MB/s`;
  const dir = join(scratch, targetMBps === null ? 'flat-out' : `rate-${targetMBps}`);
  await mkdir(dir, { recursive: true });
  const [primary, recovery] = await hostIdentities();
  const receiver = await startReceiverProcess(join(dir, 'store'), identitiesPath);
  const socket = join(dir, 'nbd.sock');
  const service = await DiskService.start({ socket, log: (line) => console.log(`  disk service: ${line}`) });
  const sender = new Sender({ identity: primary });
  const diskKey = `bench/${EXPORT}`;
  try {
    const imagePath = join(dir, 'disk.img');
    await createSparseImage(imagePath, args.imageSize);
    const info = await service.attach(EXPORT, { imagePath, journalDir: join(dir, 'journal') });
    const source = service.backend(EXPORT) as JournaledBackend;
    sender.addDisk({
      diskKey,
      source,
      receiver: { host: '127.0.0.1', port: receiver.port, fingerprint: recovery.fingerprint },
      statePath: join(dir, 'sender-state.json'),
    });
    await waitFor('the initial sync', () => sender.status(diskKey).lastSync?.completed === true, 120_000);

    const caughtUp = () => {
      const st = sender.status(diskKey);
      return !st.resyncRequired && st.lastAckedSeq >= source.journal.status.writtenSeq;
    };
    const rpos: number[] = [];
    let overflowed = false;
    let journalPeakBytes = 0;
    let lastAckedTimeMs = Date.now();
    const sample = () => {
      const st = sender.status(diskKey);
      if (st.lastAckedRecordTimeMs !== null) lastAckedTimeMs = st.lastAckedRecordTimeMs;
      overflowed ||= st.resyncRequired;
      journalPeakBytes = Math.max(journalPeakBytes, source.journal.status.usedBytes);
      rpos.push(caughtUp() ? 0 : (Date.now() - lastAckedTimeMs) / 1000);
    };
    const wire0 = sender.status(diskKey).wireBytesSent;
    const hostCpu0 = process.cpuUsage();
    const receiverCpu0 = await receiver.cpuSeconds();
    const started = performance.now();
    const timer = setInterval(sample, 1000);
    let written: FioResult;
    let drainSeconds: number | null = null;
    try {
      written = await fio(args, info.uri, targetMBps, dir);
      const writerEnd = performance.now();
      try {
        await waitFor('the backlog to drain', caughtUp, args.drainSeconds * 1000);
        drainSeconds = (performance.now() - writerEnd) / 1000;
      } catch {
        drainSeconds = null;
      }
      sample();
    } finally {
      clearInterval(timer);
    }
    const elapsed = (performance.now() - started) / 1000;
    const hostCpu = process.cpuUsage(hostCpu0);
    const sorted = [...rpos].sort((a, b) => a - b);
    const rpo = {
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      max: sorted.at(-1) ?? Number.NaN,
      samples: sorted.length,
    };
    const result: RateResult = {
      label,
      targetMBps,
      achievedMBps: written.mbps,
      writtenBytes: written.bytes,
      rpo,
      drainSeconds,
      wireBytes: sender.status(diskKey).wireBytesSent - wire0,
      journalPeakBytes,
      overflowed,
      cpu: {
        host: (hostCpu.user + hostCpu.system) / 1e6 / elapsed,
        receiver: ((await receiver.cpuSeconds()) - receiverCpu0) / elapsed,
      },
      met:
        targetMBps !== null &&
        written.mbps >= 0.9 * targetMBps &&
        rpo.p99 <= RPO_GOAL_S &&
        !overflowed &&
        drainSeconds !== null,
    };
    if (args.verify && drainSeconds !== null) await checkReplica(sender, diskKey, imagePath);
    console.log(
      `${label.padStart(10)}: achieved ${result.achievedMBps.toFixed(1)} MB/s, ` +
        `RPO p50 ${rpo.p50.toFixed(1)} s p99 ${rpo.p99.toFixed(1)} s max ${rpo.max.toFixed(1)} s (${rpo.samples} samples), ` +
        `drained ${drainSeconds === null ? `not within ${args.drainSeconds} s` : `in ${drainSeconds.toFixed(1)} s`}, ` +
        `wire ${(result.wireBytes / MB).toFixed(0)} MB for ${(written.bytes / MB).toFixed(0)} MB written, ` +
        `journal peak ${(journalPeakBytes / MB).toFixed(0)} MB` +
        `${overflowed ? ', JOURNAL OVERFLOWED (bitmap resync)' : ''}, ` +
        `cpu host ${result.cpu.host.toFixed(2)} receiver ${result.cpu.receiver.toFixed(2)}` +
        `${targetMBps === null ? '' : result.met ? '  ok' : '  MISS'}`,
    );
    return result;
  } finally {
    await sender.close();
    await service.close();
    await receiver.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The same fio flat out against `nbdkit file` on a fresh sparse image: the writer's ceiling here. */
async function nbdkitFlatOut(args: Args, scratch: string): Promise<number> {
  const dir = join(scratch, 'nbdkit');
  await mkdir(dir, { recursive: true });
  const imagePath = join(dir, 'disk.img');
  await createSparseImage(imagePath, args.imageSize);
  const socket = join(dir, 'nbd.sock');
  const child = spawn('nbdkit', ['-f', '-U', socket, '-e', EXPORT, 'file', `file=${imagePath}`], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    const uri = `nbd+unix:///${EXPORT}?socket=${socket}`;
    await waitFor('nbdkit to listen', async () => (await stat(socket).catch(() => null)) !== null, 30_000);
    const r = await fio(args, uri, null, dir);
    console.log(`  nbdkit file, flat out (no journal, no replication): ${r.mbps.toFixed(1)} MB/s`);
    return r.mbps;
  } finally {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const args = parseArguments(process.argv.slice(2));
  const scratch = await mkdtemp(join(tmpdir(), 'haven-bench-churn-'));
  // Every byte written is kept by the replica store (retention holds a day) and, until acknowledged, the journal.
  const fastest = Math.max(...args.rates, args.flatOut ? 400 : 0);
  const needed = fastest * MB * args.seconds * 1.2 + args.imageSize;
  const fs = await statfs(scratch);
  if (fs.bavail * fs.bsize < needed) {
    throw new Error(
      `${scratch} has ${(fs.bavail * fs.bsize) / 2 ** 30} GiB free; a run of ${args.seconds} s per rate needs about ${needed / 2 ** 30} GiB`,
    );
  }
  console.log(
    `sustained churn: fio randwrite bs=${args.bs} iodepth=${args.iodepth} ` +
      `${args.flushEvery > 0 ? `flush every ${args.flushEvery} writes` : 'no flushes'}, ` +
      `${args.seconds} s per rate on a ${args.imageSize / 2 ** 30} GiB image; RPO goal p99 ≤ ${RPO_GOAL_S} s`,
  );
  const results: RateResult[] = [];
  let nbdkitMBps: number | null = null;
  try {
    const identitiesPath = join(scratch, 'identities.json');
    await writeFile(identitiesPath, JSON.stringify(await hostIdentities()));
    for (const rate of args.rates) results.push(await runRate(args, scratch, identitiesPath, rate));
    if (args.flatOut) {
      results.push(await runRate(args, scratch, identitiesPath, null));
      nbdkitMBps = await nbdkitFlatOut(args, scratch);
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }

  const sustained = Math.max(0, ...results.filter((r) => r.met).map((r) => r.targetMBps ?? 0));
  console.log(
    `\nsustained churn with RPO p99 ≤ ${RPO_GOAL_S} s: ${sustained} MB/s ` +
      `(goal ≥ ${RATE_GOAL_MBPS} MB/s: ${sustained >= RATE_GOAL_MBPS ? 'ok' : 'MISS'}, ratio ${(sustained / RATE_GOAL_MBPS).toFixed(2)}×)`,
  );
  // For information: what the writer reached while the replica kept up, whatever rate it was asked for.
  const keptUp = results.filter((r) => r.rpo.p99 <= RPO_GOAL_S && !r.overflowed && r.drainSeconds !== null);
  const keptUpMBps = Math.max(0, ...keptUp.map((r) => r.achievedMBps));
  console.log(
    `highest achieved rate with RPO p99 ≤ ${RPO_GOAL_S} s, for information: ${keptUpMBps.toFixed(1)} MB/s`,
  );
  const flat = results.find((r) => r.targetMBps === null);
  if (flat !== undefined && nbdkitMBps !== null) {
    console.log(
      `flat out, for information: haven ${flat.achievedMBps.toFixed(1)} MB/s vs nbdkit ${nbdkitMBps.toFixed(1)} MB/s ` +
        `(ratio ${(flat.achievedMBps / nbdkitMBps).toFixed(2)}×)`,
    );
  }
  await writeResults(import.meta.dirname, {
    settings: args,
    results,
    nbdkitFlatOutMBps: nbdkitMBps,
    sustainedMBps: sustained,
    keptUpMBps,
    goal: { rateMBps: RATE_GOAL_MBPS, rpoP99Seconds: RPO_GOAL_S, met: sustained >= RATE_GOAL_MBPS },
  });
}

await main();
