/**
 * Live protection of a running libvirt domain, measured inside the guest, in
 * one run on a real libvirtd (QEMU under TCG; `--kvm` where /dev/kvm works):
 *
 * 1. The same domain, the same workload (the test guest's `bench` rounds:
 *    O_DIRECT 1 MiB writes and reads of a file, 4 KiB queue-depth-1 writes,
 *    single timed 4 KiB writes), first unprotected, then protected by
 *    `haven up --libvirt` (QEMU's active mirror, write-blocking, into the
 *    host's journal-only sink, replicated to the recovery host). Prints write
 *    throughput (goal ≥ 0.8×), write latency (median, p99) and read
 *    throughput (goal ≥ 0.95×) with their ratios.
 * 2. The agent killed (kill -9) under the writing guest: restarted within
 *    QEMU's reconnect delay (QEMU reconnects by itself), then after longer
 *    than it (the mirror failed and is armed again, comparing with the
 *    replica): time until armed with a new point, bytes the guest wrote
 *    meanwhile (`virsh domblkstat`), bytes journaled and skipped
 *    (`lastRearm`) and sent since the restart.
 * 3. Time to protect a running domain with a 1 GiB and a 16 GiB sparse disk
 *    (enable-replication until the first recovery point) and the bytes sent.
 *
 * The unprotected rounds run before protection and again after it is
 * disabled (A-B-A), so load from elsewhere on the machine shows as a spread
 * rather than as a ratio. The write latency samples time one `dd` each (busybox
 * has no fio): the `fork` row is that dd's own cost, writing to /dev/null.
 *
 * Writes bench/libvirt-protect/results/latest.json. Not part of `npm test`
 * or CI. Needs root, Debian's libvirt-daemon-system, qemu-system-x86,
 * qemu-utils, e2fsprogs. About 2 minutes with the defaults on 2 cores under
 * TCG (`npm run bench:libvirt-protect`):
 *
 *   node_modules/.bin/node bench/libvirt-protect/run.ts [--file-mib 32]
 *     [--disk-mib 256] [--rounds 5] [--samples 48] [--sizes-gib 1,16]
 *     [--away-seconds 14] [--kvm]
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { isTerminalJobState } from '../../src/domain/job-states.ts';
import type { Job, Machine, MirroredDiskState } from '../../src/domain/model.ts';
import { type Child, freePort, spawnTs } from '../../src/testing/child-process.ts';
import { defineTestDomain, type LibvirtTestDomain } from '../../src/testing/libvirt-domain.fixture.ts';
import { ensureLibvirtd, libvirtMissing } from '../../src/testing/libvirtd.fixture.ts';
import { until as waitUntil } from '../../src/testing/until.ts';

const run = promisify(execFile);
const MiB = 2 ** 20;
const GiB = 2 ** 30;
/** QEMU holds the guest's writes this long while the sink is away (the mirror service's default). */
const RECONNECT_DELAY_SECONDS = 10;

const { values: flags } = parseArgs({
  options: {
    'file-mib': { type: 'string', default: '32' },
    'disk-mib': { type: 'string', default: '256' },
    rounds: { type: 'string', default: '5' },
    samples: { type: 'string', default: '48' },
    'sizes-gib': { type: 'string', default: '1,16' },
    'away-seconds': { type: 'string', default: String(RECONNECT_DELAY_SECONDS + 4) },
    kvm: { type: 'boolean', default: false },
  },
});
const fileMiB = Number(flags['file-mib']);
const diskBytes = Number(flags['disk-mib']) * MiB;
const rounds = Number(flags.rounds);
const samples = Number(flags.samples);
const sizes = flags['sizes-gib']
  .split(',')
  .filter((s) => s !== '')
  .map((g) => Number(g) * GiB);
const awaySeconds = Number(flags['away-seconds']);
const virtualization = flags.kvm ? 'kvm' : 'qemu';
if (awaySeconds <= RECONNECT_DELAY_SECONDS)
  throw new Error(`--away-seconds must exceed QEMU's reconnect delay of ${RECONNECT_DELAY_SECONDS} s`);

const skip = await libvirtMissing();
if (skip) {
  console.error(skip);
  process.exit(1);
}

const log = (line: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
const until = <T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 300_000) =>
  waitUntil(what, probe, { timeoutMs, intervalMs: 200 });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const CLI = 'src/cli/main.ts';
const suffix = Math.random().toString(16).slice(2, 8);

// ---- one bench round as the guest prints it (src/guest/guest-init.sh, bench_rounds)
interface Round {
  k: number;
  write?: { bytes: number; ns: number };
  read?: { bytes: number; ns: number };
  stream?: { writes: number; ns: number };
  lat: number[];
  fork: number[];
  /** When the watcher first saw the round's end line (ms since epoch). */
  endSeenAt?: number;
}

/** Follows a domain's console file, parsing bench rounds as they appear. */
class RoundWatcher {
  readonly rounds = new Map<number, Round>();
  private timer: NodeJS.Timeout | null = null;
  private seenLines = 0;
  private readonly file: string;
  constructor(file: string) {
    this.file = file;
  }
  start(): void {
    this.timer = setInterval(() => void this.poll(), 150);
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
  async poll(): Promise<void> {
    const lines = (await readFile(this.file, 'utf8').catch(() => '')).split('\n');
    // The last line may be incomplete.
    const complete = lines.length - 1;
    for (let i = this.seenLines; i < complete; i++) this.parse(lines[i]!.trim());
    this.seenLines = Math.max(this.seenLines, complete);
  }
  private parse(line: string): void {
    const m = /^bench (\d+) (\w+)(.*)$/.exec(line);
    if (!m) return;
    const k = Number(m[1]);
    const round = this.rounds.get(k) ?? { k, lat: [], fork: [] };
    this.rounds.set(k, round);
    const nums = m[3]!.trim().split(/\s+/).filter(Boolean).map(Number);
    switch (m[2]) {
      case 'write':
        round.write = { bytes: nums[0]!, ns: nums[1]! };
        break;
      case 'read':
        round.read = { bytes: nums[0]!, ns: nums[1]! };
        break;
      case 'stream':
        round.stream = { writes: nums[0]!, ns: nums[1]! };
        break;
      case 'lat':
        round.lat = nums;
        break;
      case 'fork':
        round.fork = nums;
        break;
      case 'end':
        round.endSeenAt = Date.now();
        break;
    }
  }
  /** Complete rounds that started after `sinceMs` (their predecessor ended after it); the first round warms up. */
  completeSince(sinceMs: number): Round[] {
    return [...this.rounds.values()].filter((r) => {
      const previous = this.rounds.get(r.k - 1);
      return r.k > 1 && r.endSeenAt !== undefined && (previous?.endSeenAt ?? 0) > sinceMs;
    });
  }
}

interface Figures {
  rounds: number[];
  writeMBps: number;
  readMBps: number;
  /** Single 4 KiB O_DIRECT writes, one dd each, timed in the guest (includes dd's fork and exec). */
  writeLatencyMs: { median: number; p99: number };
  /** The same dd to /dev/null: the fork and exec inside every latency sample. */
  forkMs: { median: number };
  /** 4 KiB O_DIRECT writes at queue depth 1 in one dd: the mean time per write, no fork. */
  streamWriteMs: number;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function figures(selected: Round[]): Figures {
  const sum = (f: (r: Round) => number) => selected.reduce((a, r) => a + f(r), 0);
  const lat = selected.flatMap((r) => r.lat);
  const fork = selected.flatMap((r) => r.fork);
  return {
    rounds: selected.map((r) => r.k),
    writeMBps: sum((r) => r.write!.bytes) / MiB / (sum((r) => r.write!.ns) / 1e9),
    readMBps: sum((r) => r.read!.bytes) / MiB / (sum((r) => r.read!.ns) / 1e9),
    writeLatencyMs: { median: percentile(lat, 50) / 1e6, p99: percentile(lat, 99) / 1e6 },
    forkMs: { median: percentile(fork, 50) / 1e6 },
    streamWriteMs: sum((r) => r.stream!.ns) / sum((r) => r.stream!.writes) / 1e6,
  };
}

// ---- haven up and its API
const libvirtd = await ensureLibvirtd();
const dir = await mkdtemp(join(tmpdir(), 'haven-bench-lp-'));
// Where commit would put recovered disks: a folder libvirt's QEMU can reach, never world-writable.
const store = await mkdtemp('/tmp/haven-bench-lp-store-');
await chmod(store, 0o755);
const port = await freePort();
const controlPort = await freePort();
let up: Child | null = null;
let domain: LibvirtTestDomain | null = null;
let watcher: RoundWatcher | null = null;

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const token = (await readFile(join(dir, 'admin.token'), 'utf8')).trim();
  const response = await fetch(`http://127.0.0.1:${port}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await response.json().catch(() => null)) as T;
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

async function operate(machine: Machine, operation: string, body: unknown): Promise<Job> {
  const started = await api<Job>('POST', `/machines/${machine.id}/${operation}`, body);
  const job = await until(`${operation} to finish`, async () => {
    const j = await api<Job>('GET', `/jobs/${started.id}`);
    return isTerminalJobState(j.state) ? j : undefined;
  });
  if (job.state !== 'succeeded')
    throw new Error(`${operation}: ${job.state} ${JSON.stringify(job.error)} ${JSON.stringify(job.steps)}`);
  return job;
}

const getMachine = (id: string) => api<Machine>('GET', `/machines/${id}`);
const mirrorDisk = (m: Machine): MirroredDiskState | undefined => m.replication?.mirror?.disks[0];

async function startUp(storageFolders: string[]): Promise<void> {
  const child = spawnTs(CLI, [
    'up',
    '--data',
    dir,
    '--port',
    String(port),
    '--control-port',
    String(controlPort),
    '--libvirt',
    libvirtd.uri,
    '--share-group',
    'libvirt-qemu',
    ...storageFolders.flatMap((folder) => ['--storage', folder]),
    '--no-demo',
  ]);
  up = child;
  await until('haven up to come up', async () => child.output().includes('is up.'), 60_000).catch(
    (error: Error) => {
      throw new Error(`${error.message}:\n${child.output()}`);
    },
  );
  // Connected, and each has reported its replication endpoint (enable-replication needs both).
  await until('the hosts to connect', async () => {
    const { hosts } = await api<{ hosts: Array<{ status: string; replicationAddress: string | null }> }>(
      'GET',
      '/hosts',
    );
    return hosts.length === 2 && hosts.every((h) => h.status === 'connected' && h.replicationAddress);
  });
}

async function killUp(): Promise<void> {
  const child = up!;
  up = null;
  child.process.kill('SIGKILL');
  await child.exited;
}

/** Every disk armed, and a point cut after `sinceMs` (the health is reported beside it). */
function armedWithPointAfter(id: string, sinceMs: number): Promise<Machine> {
  return until('the mirror armed, with a new point', async () => {
    const m = await getMachine(id).catch(() => undefined);
    const lastPoint = m?.replication?.mirror?.lastPointAt;
    return m?.replication?.mirror?.state === 'armed' && lastPoint && Date.parse(lastPoint) > sinceMs
      ? m
      : undefined;
  });
}

/** Bytes the guest has written to its disk, as QEMU counts them. */
async function guestWrittenBytes(name: string): Promise<number> {
  const { stdout } = await run('virsh', ['-c', libvirtd.uri, 'domblkstat', name, 'vda']);
  return Number(/wr_bytes\s+(\d+)/.exec(stdout)?.[1]);
}

async function allocatedBytes(image: string): Promise<number> {
  const { stdout } = await run('qemu-img', ['info', '-U', '--output=json', image]);
  return (JSON.parse(stdout) as { 'actual-size': number })['actual-size'];
}

async function importDomain(d: LibvirtTestDomain): Promise<Machine> {
  const machine = await api<Machine>('POST', '/machines/import', { hostId: 'primary', domain: d.name });
  await api('PATCH', '/sites/primary', { networkMapping: { [d.bridge]: d.bridge } });
  return machine;
}

async function removeDomain(): Promise<void> {
  watcher?.stop();
  watcher = null;
  await domain?.remove();
  domain = null;
}

async function waitRounds(w: RoundWatcher, sinceMs: number, what: string): Promise<Round[]> {
  return until(
    `${rounds} ${what} bench rounds`,
    async () => {
      const done = w.completeSince(sinceMs);
      return done.length >= rounds ? done.slice(0, rounds) : undefined;
    },
    rounds * 240_000,
  );
}

interface Rearm {
  case: 'short' | 'long';
  awaySeconds: number;
  /** From the restarted `haven up`'s spawn to the mirror armed, the machine healthy and a new point. */
  secondsToArmed: number;
  /** From the kill to the same. */
  secondsKillToArmed: number;
  armsBefore: number;
  armsAfter: number;
  reason: string | null;
  compared: boolean;
  guestWrittenBytes: number;
  journaledBytes: number | null;
  skippedBytes: number | null;
  sentBytesSinceRestart: number;
  /** The machine's replication health when it was seen armed again. */
  health: string;
}

interface ProtectTime {
  diskBytes: number;
  allocatedBytes: number;
  /** enable-replication call to its job succeeded (the job waits for the first point). */
  secondsToJobDone: number;
  /** enable-replication call to the machine listing a recovery point. */
  secondsToFirstPoint: number;
  /** Sent to the recovery host when the first point was listed, and still to send then. */
  sentBytes: number;
  pendingBytes: number;
}

const results: {
  /** Before protection, after it was disabled, and both together (what the ratios use). */
  unprotectedBefore?: Figures;
  unprotectedAfter?: Figures;
  unprotected?: Figures;
  protected?: Figures;
  benchDisk?: ProtectTime;
  rearm: Rearm[];
  protect: ProtectTime[];
} = { rearm: [], protect: [] };

async function protect(d: LibvirtTestDomain): Promise<{ machine: Machine; time: ProtectTime }> {
  const machine = await importDomain(d);
  const t0 = Date.now();
  await operate(machine, 'enable-replication', { recoveryHostId: 'recovery', policyId: 'default' });
  const jobDone = Date.now();
  const withPoint = await until('the first recovery point', async () => {
    const { recoveryPoints } = await api<{ recoveryPoints: unknown[] }>(
      'GET',
      `/machines/${machine.id}/recovery-points`,
    );
    return recoveryPoints.length > 0 ? Date.now() : undefined;
  });
  // A guest that keeps writing keeps the sender busy: the bytes sent until the first point was listed.
  const now = await until('the machine to report its replication', async () => {
    const m = await getMachine(machine.id);
    return m.replication?.mirror?.lastPointAt ? m : undefined;
  });
  return {
    machine: now,
    time: {
      diskBytes: d.diskBytes,
      allocatedBytes: await allocatedBytes(d.image),
      secondsToJobDone: (jobDone - t0) / 1000,
      secondsToFirstPoint: (withPoint - t0) / 1000,
      sentBytes: now.replication!.sentBytes,
      pendingBytes: now.replication!.pendingBytes,
    },
  };
}

async function rearmCase(
  machine: Machine,
  name: string,
  which: Rearm['case'],
  away: number,
  storageFolders: string[],
): Promise<Rearm> {
  const before = await getMachine(machine.id);
  const written0 = await guestWrittenBytes(name);
  const killedAt = Date.now();
  await killUp();
  await sleep(away * 1000);
  const restarted = Date.now();
  await startUp(storageFolders);
  const again = await armedWithPointAfter(machine.id, restarted);
  const armedAt = Date.now();
  const written = (await guestWrittenBytes(name)) - written0;
  const disk = mirrorDisk(again);
  const rearm = disk?.lastRearm ?? null;
  const fresh = rearm !== null && Date.parse(rearm.at) >= restarted;
  return {
    case: which,
    awaySeconds: away,
    secondsToArmed: (armedAt - restarted) / 1000,
    secondsKillToArmed: (armedAt - killedAt) / 1000,
    armsBefore: mirrorDisk(before)?.arms ?? 0,
    armsAfter: disk?.arms ?? 0,
    reason: fresh ? rearm.reason : null,
    compared: fresh ? rearm.compared : false,
    guestWrittenBytes: written,
    journaledBytes: fresh ? rearm.journaledBytes : null,
    skippedBytes: fresh ? rearm.skippedBytes : null,
    sentBytesSinceRestart: again.replication?.sentBytes ?? 0,
    health: again.health,
  };
}

const started = Date.now();
try {
  // ---- 1. the same domain unprotected, then protected
  const benchName = `haven-bench-${suffix}`;
  log(
    `defining ${benchName}: ${diskBytes / MiB} MiB qcow2 disk, bench file ${fileMiB} MiB, ${virtualization}`,
  );
  domain = await defineTestDomain(libvirtd.uri, benchName, {
    diskBytes,
    guest: { workload: 'bench', bench: { fileMiB, latencySamples: samples } },
    virtualization,
  });
  const benchDomain = domain;
  const folders = [store, benchDomain.dir];
  await run('virsh', ['-c', libvirtd.uri, 'start', benchName]);
  watcher = new RoundWatcher(benchDomain.consoleFile);
  watcher.start();
  const benchWatcher = watcher;
  log('starting haven up --libvirt');
  await startUp(folders);
  log(`unprotected: waiting for ${rounds} rounds after a warm-up round`);
  const unprotectedRounds = await waitRounds(benchWatcher, 0, 'unprotected');
  results.unprotectedBefore = figures(unprotectedRounds);
  log(`unprotected: ${JSON.stringify(results.unprotectedBefore)}`);

  log('enable-replication on the running domain');
  const protectedBench = await protect(benchDomain);
  results.benchDisk = protectedBench.time;
  const armedSince = Date.now();
  log(`protected in ${protectedBench.time.secondsToFirstPoint.toFixed(1)} s; waiting for ${rounds} rounds`);
  // A round counts only when it began after the mirror was seen armed (+ the watcher's slack).
  const protectedRounds = await waitRounds(benchWatcher, armedSince + 500, 'protected');
  const stillArmed = await getMachine(protectedBench.machine.id);
  if (stillArmed.replication?.mirror?.state !== 'armed')
    throw new Error(
      `the mirror is not armed after the protected rounds: ${JSON.stringify(stillArmed.replication)}`,
    );
  results.protected = figures(protectedRounds);
  log(`protected: ${JSON.stringify(results.protected)}`);

  // ---- 2. the agent killed under the writing guest
  log('kill -9 of haven up, restarted after 2 s (QEMU reconnects by itself)');
  results.rearm.push(await rearmCase(protectedBench.machine, benchName, 'short', 2, folders));
  log(JSON.stringify(results.rearm.at(-1)));
  log(`kill -9 of haven up, restarted after ${awaySeconds} s (past the reconnect delay: armed again)`);
  results.rearm.push(await rearmCase(protectedBench.machine, benchName, 'long', awaySeconds, folders));
  log(JSON.stringify(results.rearm.at(-1)));
  // Unprotected again (A-B-A): the machine is shared, so load from elsewhere shows as a spread.
  await operate(protectedBench.machine, 'disable-replication', {});
  const disabledAt = Date.now();
  const afterRounds = await waitRounds(benchWatcher, disabledAt + 500, 'unprotected (after)');
  results.unprotectedAfter = figures(afterRounds);
  log(`unprotected after: ${JSON.stringify(results.unprotectedAfter)}`);
  results.unprotected = figures([...unprotectedRounds, ...afterRounds]);
  await removeDomain();

  // ---- 3. time to protect a running domain, by disk size
  for (const size of sizes) {
    const name = `haven-bench-${size / GiB}g-${suffix}`;
    log(`defining ${name} with a ${size / GiB} GiB sparse qcow2 disk`);
    domain = await defineTestDomain(libvirtd.uri, name, {
      diskBytes: size,
      guest: { rate: 2 },
      virtualization,
    });
    const d = domain;
    // haven up learns a host's storage folders at start; this domain's folder is new.
    await killUp();
    await startUp([store, d.dir]);
    await run('virsh', ['-c', libvirtd.uri, 'start', name]);
    await until('the guest to write records', async () =>
      (await readFile(d.consoleFile, 'utf8').catch(() => '')).includes('durable 3'),
    );
    log(`enable-replication (${size / GiB} GiB)`);
    const { machine, time } = await protect(d);
    results.protect.push(time);
    log(JSON.stringify(time));
    await operate(machine, 'disable-replication', {});
    await removeDomain();
  }
} finally {
  if (up) await killUp();
  await removeDomain();
  await rm(dir, { recursive: true, force: true });
  await rm(store, { recursive: true, force: true });
  await libvirtd.stop();
}

// ---- report
const u = results.unprotected!;
const p = results.protected!;
const fmt = (n: number, d = 1) => n.toFixed(d);
const mb = (n: number | null) => (n === null ? '-' : `${fmt(n / MiB)} MiB`);
const goals: Array<{ test: string; ratio: number; goal: number; met: boolean }> = [];
const rows: Array<[string, number, number, number | null]> = [
  ['write throughput (MiB/s)', u.writeMBps, p.writeMBps, 0.8],
  ['read throughput (MiB/s)', u.readMBps, p.readMBps, 0.95],
  ['write latency median (ms)', u.writeLatencyMs.median, p.writeLatencyMs.median, null],
  ['write latency p99 (ms)', u.writeLatencyMs.p99, p.writeLatencyMs.p99, null],
  ['  of which dd fork+exec (ms)', u.forkMs.median, p.forkMs.median, null],
  ['4 KiB QD1 write, mean (ms)', u.streamWriteMs, p.streamWriteMs, null],
];
console.log(
  `\ninside the guest (${virtualization}), rounds ${u.rounds.join(',')} unprotected (before protection and after it was disabled), ${p.rounds.join(',')} protected:`,
);
console.log('figure                          unprotected   protected   ratio protected/unprotected');
for (const [test, a, b, goal] of rows) {
  const ratio = b / a;
  if (goal !== null) goals.push({ test, ratio, goal, met: ratio >= goal });
  console.log(
    `${test.padEnd(31)} ${fmt(a, 2).padStart(11)} ${fmt(b, 2).padStart(11)}   ${fmt(ratio, 2)}×${goal === null ? '' : ` (goal ≥ ${goal}: ${ratio >= goal ? 'met' : 'NOT met'})`}`,
  );
}
console.log('\nre-arm after kill -9 of haven up under the writing guest:');
for (const r of results.rearm)
  console.log(
    `${r.case.padEnd(5)} away ${r.awaySeconds} s: armed ${fmt(r.secondsToArmed)} s after restart (${fmt(r.secondsKillToArmed)} s after the kill), arms ${r.armsBefore}→${r.armsAfter}${r.reason ? `, "${r.reason}"` : ''}, guest wrote ${mb(r.guestWrittenBytes)}, journaled ${mb(r.journaledBytes)}, skipped ${mb(r.skippedBytes)}, sent ${mb(r.sentBytesSinceRestart)} since the restart, health ${r.health}`,
  );
console.log('\ntime to protect a running domain (enable-replication → first recovery point):');
for (const t of [...(results.benchDisk ? [results.benchDisk] : []), ...results.protect])
  console.log(
    `${`${fmt(t.diskBytes / GiB, 2)} GiB`.padEnd(10)} (${mb(t.allocatedBytes)} allocated): ${fmt(t.secondsToFirstPoint)} s (job ${fmt(t.secondsToJobDone)} s), sent ${mb(t.sentBytes)} (${mb(t.pendingBytes)} pending)`,
  );
if (results.protect.length >= 2)
  console.log(
    `ratio time to protect ${fmt(results.protect.at(-1)!.diskBytes / GiB, 0)} GiB / ${fmt(results.protect[0]!.diskBytes / GiB, 0)} GiB: ${fmt(results.protect.at(-1)!.secondsToFirstPoint / results.protect[0]!.secondsToFirstPoint, 2)}`,
  );
console.log(`\nwhole run ${fmt((Date.now() - started) / 1000, 0)} s`);

const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'latest.json');
await mkdir(dirname(out), { recursive: true });
await writeFile(
  out,
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      virtualization,
      settings: { fileMiB, diskBytes, rounds, samples, sizes, awaySeconds },
      ...results,
      goals,
    },
    null,
    2,
  )}\n`,
);
console.log(`results: ${out}`);
