/**
 * NBD server benchmark: the same clients (nbdcopy, fio's nbd engine) against
 * `nbdkit file`, `qemu-nbd` and Haven's disk server (journaling on), one after
 * the other on the same image, all on unix sockets. Prints a table with the
 * ratios haven/nbdkit and haven/qemu-nbd and writes bench/nbd/results/latest.json.
 *
 * `haven-sink` is the journal-only sink (`haven disk serve --sink`, the mirror
 * target): it keeps no image, so only the write tests run against it (it
 * refuses reads), compared with nbdkit writing the image (column sink/nbdkit).
 *
 * `qemu` is QEMU's block layer serving the image (qemu-storage-daemon: a VM's
 * block layer without the VM) and `qemu-mirror` the same with QEMU's active
 * mirror (write-blocking) into Haven's sink, as Haven protects a running
 * libvirt domain: column mirror/qemu is what protection costs a guest's
 * writes (the mirror's first full copy finishes before the tests start).
 * `qemu-mirror-nbdkit` mirrors into `nbdkit file` instead: column
 * mirror/nbdkit-mirror is Haven's sink against that peer behind the same mirror.
 *
 * Usage: node bench/nbd/run.ts [--size 256M] [--runtime 5] [--rounds 1] [--quick]
 *          [--only nbdkit,qemu-nbd,haven,haven-sink,qemu,qemu-mirror,qemu-mirror-nbdkit]
 *          [--nbdcopy-only] [--writes-only]
 *          [--base DIR] [--script] [--cpu-prof DIR]
 *
 * --writes-only runs only the write tests without FLUSH (nbdcopy, fio 4k and
 * 64k). --cpu-prof DIR starts Haven's servers with `--cpu-prof` writing their
 * profiles to DIR (for finding where the time goes; figures are then lower).
 * Haven's servers start through the checkout's bin/haven, with the Node flags
 * users get.
 *
 * --rounds N runs every server N times, alternating, and reports medians (the
 * machines are shared and noisy). --base DIR adds `haven-base`: the same
 * script from another checkout (e.g. a `git worktree` of an older commit),
 * for before/after figures measured in one run.
 *
 * Comparable settings: every server goes through the page cache and honours
 * flush with fdatasync (nbdkit file: cache=default; qemu-nbd: --cache=writeback
 * --aio=threads; Haven: buffered I/O, journal + image). Flush/FUA per client:
 * plain `nbdcopy` and fio send no FLUSH and no FUA (fio without --fsync): those
 * figures are the servers' request paths into the page cache. `nbdcopy --flush`
 * sends one FLUSH at the end, inside the timed copy, so that figure includes
 * making the data durable: for Haven the image *and* the journal, twice the
 * bytes, so on a slow disk it is bounded by the disk, not the server. Reads
 * come from the page cache for all. Server CPU (cores busy) is printed per
 * test: on a shared machine it is steadier than throughput.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QmpClient } from '../../src/hypervisor/qmp-client.ts';
import { startActiveMirror } from '../../src/testing/active-mirror.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const nodeBin = join(root, 'node_modules', '.bin', 'node');
const EXPORT = 'bench';

interface Args {
  size: number;
  runtime: number;
  only: string[] | null;
  nbdcopyOnly: boolean;
  rounds: number;
  base: string | null;
  /** Start Haven's server with bench/nbd/haven-server.ts even when `haven disk serve` exists. */
  script: boolean;
  writesOnly: boolean;
  /** Directory for V8 CPU profiles of Haven's servers; null: no profiling. */
  cpuProf: string | null;
}

function parseSize(text: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(text);
  if (!m) throw new Error(`bad size '${text}' (e.g. 256M)`);
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[(m[2] ?? '').toUpperCase()] ?? 1;
  return Number(m[1]) * unit;
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    size: 256 * 1024 ** 2,
    runtime: 5,
    only: null,
    nbdcopyOnly: false,
    rounds: 1,
    base: null,
    script: false,
    writesOnly: false,
    cpuProf: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--size') args.size = parseSize(value());
    else if (a === '--runtime') args.runtime = Number(value());
    else if (a === '--quick') {
      args.size = 64 * 1024 ** 2;
      args.runtime = 2;
    } else if (a === '--only') args.only = value().split(',');
    else if (a === '--nbdcopy-only') args.nbdcopyOnly = true;
    else if (a === '--rounds') args.rounds = Math.max(1, Number(value()));
    else if (a === '--base') args.base = value();
    else if (a === '--script') args.script = true;
    else if (a === '--writes-only') args.writesOnly = true;
    else if (a === '--cpu-prof') args.cpuProf = value();
    else throw new Error(`unknown argument '${a}'`);
  }
  return args;
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function run(cmd: string, args: string[], cwd?: string): Promise<RunResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({
        code,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        ms: performance.now() - started,
      }),
    );
  });
}

async function mustRun(cmd: string, args: string[], cwd?: string): Promise<RunResult> {
  const r = await run(cmd, args, cwd);
  if (r.code !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.slice(0, 2000)}`);
  return r;
}

/** CPU seconds (user + system) used so far by a process. */
async function cpuSeconds(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

interface ServerSpec {
  name: string;
  /** How it was started, for the report. */
  describe: string;
  /** Only the write tests run: a journal-only sink refuses reads; a mirror changes only writes. */
  writesOnly?: boolean;
  start(image: string, socket: string, scratch: string, size: number): ChildProcess | Promise<Launched>;
}

/** A server set up in several steps (QEMU and the mirror target it writes to). */
interface Launched {
  /** The process whose CPU the report shows. */
  measured: ChildProcess;
  /** Ready to serve `socket` (an NBD export named EXPORT). */
  ready(uri: string): Promise<void>;
  stop(): Promise<void>;
}

function nodeFor(checkout: string): string {
  return existsSync(join(checkout, 'node_modules', '.bin', 'node'))
    ? join(checkout, 'node_modules', '.bin', 'node')
    : nodeBin;
}

/** Environment of Haven's servers: a CPU profile per process into `dir` when asked. */
function havenEnv(dir: string | null, name: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, UV_THREADPOOL_SIZE: '16' };
  if (dir === null) return env;
  const flags = `--cpu-prof --cpu-prof-dir=${dir} --cpu-prof-name=${name}.cpuprofile`;
  return { ...env, NODE_OPTIONS: `${env.NODE_OPTIONS ?? ''} ${flags}`.trim() };
}

/** How a checkout runs its CLI: bin/haven (with the runtime flags users get) when it has one. */
function havenCli(checkout: string): { cmd: string; args: string[] } {
  const launcher = join(checkout, 'bin', 'haven');
  if (existsSync(launcher)) return { cmd: launcher, args: [] };
  return { cmd: nodeFor(checkout), args: [join(checkout, 'src', 'cli', 'main.ts')] };
}

/** Starts `haven disk serve ARGS` of a checkout. */
function diskServe(checkout: string, name: string, profileDir: string | null, args: string[]): ChildProcess {
  const cli = havenCli(checkout);
  return spawn(
    cli.cmd,
    [...cli.args, 'disk', 'serve', ...args, '--export', EXPORT, '--journal-capacity', '64G'],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: havenEnv(profileDir, name),
    },
  );
}

function havenSpec(
  name: string,
  checkout: string,
  preferCli: boolean,
  profileDir: string | null,
): ServerSpec {
  // Use the real CLI once it exists; until then the equivalent script.
  if (preferCli && existsSync(join(checkout, 'src', 'cli', 'commands', 'disk-commands.ts'))) {
    return {
      name,
      describe: 'haven disk serve --image IMG --journal DIR --socket SOCK --export bench',
      // --journal-capacity 64G: a benchmark never overflows into bitmap mode.
      start: (image, socket, scratch) =>
        diskServe(checkout, name, profileDir, [
          '--image',
          image,
          '--journal',
          join(scratch, 'journal'),
          '--socket',
          socket,
        ]),
    };
  }
  return {
    name,
    describe: `${checkout === root ? '' : `${checkout}/`}bench/nbd/haven-server.ts (NbdServer + JournaledBackend, journaling on)`,
    start: (image, socket, scratch) =>
      spawn(
        nodeFor(checkout),
        [join(checkout, 'bench', 'nbd', 'haven-server.ts'), image, join(scratch, 'journal'), socket, EXPORT],
        { stdio: ['ignore', 'ignore', 'inherit'], env: havenEnv(profileDir, name) },
      ),
  };
}

/** The journal-only sink (DiskService.attach with `sink: {sizeBytes}`) through the CLI. */
function havenSinkSpec(name: string, checkout: string, profileDir: string | null): ServerSpec {
  return {
    name,
    writesOnly: true,
    describe: 'haven disk serve --sink --size N --journal DIR --socket SOCK --export bench',
    start: (_image, socket, scratch, size) =>
      diskServe(checkout, name, profileDir, [
        '--sink',
        '--size',
        String(size),
        '--journal',
        join(scratch, 'journal'),
        '--socket',
        socket,
      ]),
  };
}

const otherServers: ServerSpec[] = [
  {
    name: 'nbdkit',
    describe: 'nbdkit -f -U SOCK -e bench file IMG (cache=default)',
    start: (image, socket) =>
      spawn('nbdkit', ['-f', '-U', socket, '-e', EXPORT, 'file', `file=${image}`], {
        stdio: ['ignore', 'ignore', 'inherit'],
      }),
  },
  {
    name: 'qemu-nbd',
    describe: 'qemu-nbd -f raw -t -e 16 --cache=writeback --aio=threads -x bench -k SOCK IMG',
    start: (image, socket) =>
      spawn(
        'qemu-nbd',
        [
          '-f',
          'raw',
          '-t',
          '-e',
          '16',
          '--cache=writeback',
          '--aio=threads',
          '-x',
          EXPORT,
          '-k',
          socket,
          image,
        ],
        { stdio: ['ignore', 'ignore', 'inherit'] },
      ),
  },
];

/**
 * QEMU's block layer serving the image (qemu-storage-daemon: the block layer
 * of a VM without the VM; writes enter it as a guest's do), optionally with
 * QEMU's active mirror (`blockdev-mirror`, write-blocking, as Haven arms it
 * for a running libvirt domain) into Haven's journal-only sink. The ratio
 * qemu-mirror/qemu is what a libvirt user's writes pay for protection.
 */
function qemuSpec(
  name: string,
  mirror: 'haven-sink' | 'nbdkit' | null,
  profileDir: string | null,
): ServerSpec {
  const target = {
    'haven-sink': 'haven disk serve --sink',
    nbdkit: 'nbdkit file (a file the size of the image)',
  };
  return {
    name,
    writesOnly: mirror !== null,
    describe:
      mirror === null
        ? 'qemu-storage-daemon (raw, page cache, aio=threads) exporting IMG over NBD'
        : `qemu-storage-daemon exporting IMG, blockdev-mirror write-blocking into ${target[mirror]}`,
    start: async (image, socket, scratch, size) => {
      const sinkSocket = join(scratch, `${name}-sink.sock`);
      const sinkFile = join(scratch, `${name}-target.raw`);
      if (mirror === 'nbdkit') await mustRun('truncate', ['-s', String(size), sinkFile]);
      const sink =
        mirror === 'haven-sink'
          ? diskServe(root, `${name}-sink`, profileDir, [
              '--sink',
              '--size',
              String(size),
              '--journal',
              join(scratch, 'journal'),
              '--socket',
              sinkSocket,
            ])
          : mirror === 'nbdkit'
            ? spawn('nbdkit', ['-f', '-U', sinkSocket, '-e', EXPORT, 'file', `file=${sinkFile}`], {
                stdio: ['ignore', 'ignore', 'inherit'],
              })
            : null;
      const qmpPath = join(scratch, `${name}-qmp.sock`);
      let qemu: ChildProcess | null = null;
      let qmp: QmpClient | null = null;
      const stop = async () => {
        await qmp?.execute('quit').catch(() => {});
        await qmp?.close().catch(() => {});
        if (qemu !== null) await stopServer(qemu);
        if (sink !== null) await stopServer(sink);
        await rm(sinkSocket, { force: true });
        await rm(sinkFile, { force: true });
        await rm(qmpPath, { force: true });
      };
      try {
        if (sink !== null) await waitReady(`nbd+unix:///${EXPORT}?socket=${sinkSocket}`, sink);
        qemu = spawn(
          'qemu-storage-daemon',
          [
            '--blockdev',
            `driver=file,node-name=file0,filename=${image},aio=threads,cache.direct=off`,
            '--blockdev',
            'driver=raw,node-name=disk,file=file0',
            '--nbd-server',
            `addr.type=unix,addr.path=${socket}`,
            '--export',
            `type=nbd,id=exp0,node-name=disk,name=${EXPORT},writable=on`,
            '--chardev',
            `socket,id=qmp0,path=${qmpPath},server=on,wait=off`,
            '--monitor',
            'chardev=qmp0',
          ],
          { stdio: ['ignore', 'ignore', 'inherit'] },
        );
        const started = qemu;
        const deadline = Date.now() + 30_000;
        while (qmp === null) {
          if (started.exitCode !== null) throw new Error(`qemu-storage-daemon exited (${started.exitCode})`);
          qmp = await QmpClient.connect(qmpPath, { timeoutMs: 2000 }).catch(() => null);
          if (qmp === null) {
            if (Date.now() > deadline) throw new Error('qemu-storage-daemon: no QMP socket');
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }
        if (sink !== null) {
          const { ready } = await startActiveMirror(qmp, {
            device: 'disk',
            socket: sinkSocket,
            exportName: EXPORT,
            reconnectDelay: 10,
            readyTimeoutMs: 300_000,
            granularity: 65536,
          });
          // The first full copy is not what is measured: the guest's writes once in sync are.
          await ready;
        }
        return {
          // Haven's CPU where Haven runs: the sink behind the mirror.
          measured: sink ?? started,
          ready: (uri) => waitReady(uri, started),
          stop,
        };
      } catch (error) {
        await stop();
        throw error;
      }
    },
  };
}

async function waitReady(uri: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited early (${child.exitCode})`);
    const r = await run('nbdinfo', ['--size', uri]);
    if (r.code === 0) return;
    if (Date.now() > deadline) throw new Error(`server at ${uri} not ready: ${r.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  await exited;
  clearTimeout(timer);
}

interface Measure {
  /** MB/s (10^6 bytes per second). */
  mbps?: number;
  iops?: number;
  /** 99th percentile completion latency, ms. */
  p99ms?: number;
  /** Server CPU seconds per second of the test (1.0 = one core busy). */
  cpu: number;
}

interface Test {
  name: string;
  kind: 'read' | 'write';
  /** The figure the ratio and goal use. */
  key: 'mbps' | 'iops';
  run(uri: string, ctx: { source: string; size: number; runtime: number; cwd: string }): Promise<Measure>;
}

async function nbdcopy(args: string[], bytes: number): Promise<Omit<Measure, 'cpu'>> {
  const r = await mustRun('nbdcopy', args);
  return { mbps: bytes / 1e6 / (r.ms / 1000) };
}

interface FioJob {
  read: FioSide;
  write: FioSide;
}
interface FioSide {
  io_bytes: number;
  bw_bytes: number;
  iops: number;
  clat_ns: { percentile?: Record<string, number> };
}

async function fio(
  uri: string,
  ctx: { runtime: number; cwd: string },
  rw: string,
  bs: string,
): Promise<Omit<Measure, 'cpu'>> {
  const r = await mustRun(
    'fio',
    [
      '--name=bench',
      '--ioengine=nbd',
      `--uri=${uri}`,
      `--rw=${rw}`,
      `--bs=${bs}`,
      '--iodepth=16',
      '--numjobs=1',
      '--time_based',
      `--runtime=${ctx.runtime}`,
      '--ramp_time=1',
      '--verify_state_save=0',
      '--output-format=json',
    ],
    ctx.cwd,
  );
  const job = (JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: FioJob[] }).jobs[0];
  if (!job) throw new Error('fio printed no job');
  const side = rw.includes('read') ? job.read : job.write;
  const p99 = side.clat_ns.percentile?.['99.000000'];
  return { mbps: side.bw_bytes / 1e6, iops: side.iops, ...(p99 === undefined ? {} : { p99ms: p99 / 1e6 }) };
}

const tests: Test[] = [
  {
    name: 'nbdcopy write (file -> export)',
    kind: 'write',
    key: 'mbps',
    run: async (uri, c) => ({ ...(await nbdcopy([c.source, uri], c.size)), cpu: 0 }),
  },
  {
    name: 'nbdcopy write --flush (durable)',
    kind: 'write',
    key: 'mbps',
    run: async (uri, c) => ({ ...(await nbdcopy(['--flush', c.source, uri], c.size)), cpu: 0 }),
  },
  {
    name: 'nbdcopy read (export -> null:)',
    kind: 'read',
    key: 'mbps',
    run: async (uri, c) => ({ ...(await nbdcopy([uri, 'null:'], c.size)), cpu: 0 }),
  },
  {
    name: 'fio 4k randread QD16',
    kind: 'read',
    key: 'iops',
    run: async (uri, c) => ({ ...(await fio(uri, c, 'randread', '4k')), cpu: 0 }),
  },
  {
    name: 'fio 4k randwrite QD16',
    kind: 'write',
    key: 'iops',
    run: async (uri, c) => ({ ...(await fio(uri, c, 'randwrite', '4k')), cpu: 0 }),
  },
  {
    name: 'fio 64k seq write QD16',
    kind: 'write',
    key: 'mbps',
    run: async (uri, c) => ({ ...(await fio(uri, c, 'write', '64k')), cpu: 0 }),
  },
  {
    name: 'fio 64k seq read QD16',
    kind: 'read',
    key: 'mbps',
    run: async (uri, c) => ({ ...(await fio(uri, c, 'read', '64k')), cpu: 0 }),
  },
];

async function fillRandom(path: string, size: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    const { randomFillSync } = await import('node:crypto');
    const block = Buffer.allocUnsafe(4 << 20);
    for (let at = 0; at < size; at += block.length) {
      randomFillSync(block);
      await fh.write(block, 0, Math.min(block.length, size - at), at);
    }
  } finally {
    await fh.close();
  }
}

function fmt(n: number | undefined, digits = 0): string {
  if (n === undefined || Number.isNaN(n)) return '-';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function median(values: number[]): number | undefined {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid] : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

/** Per-field medians over the rounds. */
function medianOf(list: Measure[]): Measure {
  const out: Measure = { cpu: median(list.map((m) => m.cpu)) ?? Number.NaN };
  for (const key of ['mbps', 'iops', 'p99ms'] as const) {
    const m = median(list.flatMap((x) => (x[key] === undefined ? [] : [x[key]])));
    if (m !== undefined) out[key] = m;
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const scratch = await mkdtemp(join(tmpdir(), 'haven-bench-nbd-'));
  const rounds: Record<string, Record<string, Measure[]>> = {};
  const servers = [
    ...otherServers,
    havenSpec('haven', root, !args.script, args.cpuProf),
    havenSinkSpec('haven-sink', root, args.cpuProf),
    qemuSpec('qemu', null, args.cpuProf),
    qemuSpec('qemu-mirror', 'haven-sink', args.cpuProf),
    qemuSpec('qemu-mirror-nbdkit', 'nbdkit', args.cpuProf),
  ];
  if (args.base !== null) servers.push(havenSpec('haven-base', args.base, false, args.cpuProf));
  const chosen = servers.filter((s) => args.only === null || args.only.includes(s.name));
  const chosenTests = tests.filter(
    (t) =>
      (!args.nbdcopyOnly || t.name.startsWith('nbdcopy')) &&
      (!args.writesOnly || (t.kind === 'write' && !t.name.includes('--flush'))),
  );
  try {
    const source = join(scratch, 'source.raw');
    const image = join(scratch, 'image.raw');
    await fillRandom(source, args.size);
    console.log(
      `image ${args.size / 1024 ** 2} MiB, fio runtime ${args.runtime} s, ${args.rounds} round(s), scratch ${scratch}`,
    );
    for (let round = 0; round < args.rounds; round++) {
      for (const server of chosen) {
        // Every server starts from the same fully allocated image, so writes are overwrites for all.
        await mustRun('cp', ['--sparse=never', source, image]);
        await rm(join(scratch, 'journal'), { recursive: true, force: true });
        await rm(`${image}.haven-alloc`, { force: true });
        const fioCwd = join(scratch, 'fio');
        await mkdir(fioCwd, { recursive: true });
        const socket = join(scratch, `${server.name}.sock`);
        const uri = `nbd+unix:///${EXPORT}?socket=${socket}`;
        console.log(`\n${server.name} (round ${round + 1}): ${server.describe}`);
        const started = await server.start(image, socket, scratch, args.size);
        const launched: Launched =
          'measured' in started
            ? started
            : { measured: started, ready: (u) => waitReady(u, started), stop: () => stopServer(started) };
        const child = launched.measured;
        try {
          await launched.ready(uri);
          rounds[server.name] ??= {};
          for (const test of chosenTests) {
            if (server.writesOnly === true && test.kind !== 'write') continue;
            const pid = child.pid ?? 0;
            const cpu0 = await cpuSeconds(pid);
            const t0 = performance.now();
            const m = await test.run(uri, { source, size: args.size, runtime: args.runtime, cwd: fioCwd });
            m.cpu = ((await cpuSeconds(pid)) - cpu0) / ((performance.now() - t0) / 1000);
            const byTest = rounds[server.name]!;
            byTest[test.name] = [...(byTest[test.name] ?? []), m];
            console.log(
              `  ${test.name.padEnd(42)} ${fmt(m.mbps, 1).padStart(9)} MB/s ${fmt(m.iops).padStart(8)} IOPS` +
                `  p99 ${fmt(m.p99ms, 2).padStart(6)} ms  cpu ${fmt(m.cpu, 2)}`,
            );
          }
        } finally {
          await launched.stop();
          await rm(socket, { force: true });
        }
      }
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }

  const results: Record<string, Record<string, Measure>> = {};
  for (const [server, byTest] of Object.entries(rounds)) {
    results[server] = {};
    for (const [test, list] of Object.entries(byTest)) results[server][test] = medianOf(list);
  }
  const names = chosen.map((s) => s.name);
  console.log('\nRatios (haven / other; for p99 lower is better)');
  const header = [
    'test',
    ...names,
    'h/nbdkit',
    'h/qemu',
    ...(names.includes('haven-base') ? ['base/nbdkit'] : []),
    'goal',
    ...(names.includes('haven-sink') ? ['sink/nbdkit', 'sink goal'] : []),
    ...(names.includes('qemu-mirror') ? ['mirror/qemu'] : []),
    ...(names.includes('qemu-mirror-nbdkit') ? ['mirror/nbdkit-mirror'] : []),
  ];
  const rows: string[][] = [];
  const goals: Array<{ server: string; test: string; ratio: number; goal: number; met: boolean }> = [];
  const verdict = (r: number | undefined, goal: number) =>
    r === undefined ? '-' : `${r >= goal ? 'ok' : 'MISS'} (>=${goal})`;
  for (const test of chosenTests) {
    const value = (n: string) => results[n]?.[test.name]?.[test.key];
    const ratio = (other: string, mine = 'haven') => {
      const h = value(mine);
      const o = value(other);
      return h !== undefined && o !== undefined ? h / o : undefined;
    };
    const rk = ratio('nbdkit');
    const goal = test.kind === 'write' ? 0.8 : 0.9;
    if (rk !== undefined) goals.push({ server: 'haven', test: test.name, ratio: rk, goal, met: rk >= goal });
    // The sink keeps no image: its writes are compared with nbdkit writing one.
    const sinkGoal = 0.9;
    const rs = ratio('nbdkit', 'haven-sink');
    if (rs !== undefined) {
      goals.push({ server: 'haven-sink', test: test.name, ratio: rs, goal: sinkGoal, met: rs >= sinkGoal });
    }
    const unit = test.key === 'mbps' ? 'MB/s' : 'IOPS';
    rows.push([
      `${test.name} [${unit}]`,
      ...names.map((n) => fmt(value(n), test.key === 'mbps' ? 1 : 0)),
      fmt(rk, 2),
      fmt(ratio('qemu-nbd'), 2),
      ...(names.includes('haven-base') ? [fmt(ratio('nbdkit', 'haven-base'), 2)] : []),
      verdict(rk, goal),
      ...(names.includes('haven-sink')
        ? [fmt(rs, 2), test.kind === 'write' ? verdict(rs, sinkGoal) : '-']
        : []),
      ...(names.includes('qemu-mirror') ? [fmt(ratio('qemu', 'qemu-mirror'), 2)] : []),
      ...(names.includes('qemu-mirror-nbdkit') ? [fmt(ratio('qemu-mirror-nbdkit', 'qemu-mirror'), 2)] : []),
    ]);
    if (test.name.startsWith('fio 4k')) {
      rows.push([
        '  p99 latency [ms]',
        ...names.map((n) => fmt(results[n]?.[test.name]?.p99ms, 2)),
        ...header.slice(names.length + 1).map(() => ''),
      ]);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(header));
  for (const r of rows) console.log(line(r));

  const out = join(here, 'results', 'latest.json');
  await mkdir(dirname(out), { recursive: true });
  await writeFile(
    out,
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        sizeBytes: args.size,
        runtimeSeconds: args.runtime,
        servers: Object.fromEntries(chosen.map((s) => [s.name, s.describe])),
        results,
        goals,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`\nwritten ${out}`);
}

await main();
