/**
 * A protected physical server's write throughput with protection against
 * without, in one boot of the server guest (src/guest's server variant
 * booting from its own BIOS disk, running src/server-agent), the same
 * workload throughout: one timed O_DIRECT write of `--mib` MiB (dd, 1 MiB
 * blocks, fsync) to the same file of its data filesystem, once a second.
 *
 * 1. unmirrored: the server before enrolment. The enrolment the operator
 *    types (/etc/haven-onboard, run once at first boot) first mounts the data
 *    partition /dev/vda2 itself and runs the workload there, then enrols.
 *    That is the server as it ran before Haven: no md, no agent, the same
 *    file at the same place on the same disk (md metadata 1.0 sits at the
 *    end, so md0p2 starts where vda2 does).
 * 2. mirrored [UU]: after enrolment the agent has made /dev/vda an md raid1
 *    with an NBD leg (TLS, write-mostly, synchronous unless `--write-behind`)
 *    on a real DiskService export (journaling) reached through QEMU's user
 *    network; samples count once the initial resync is done.
 * 3. leg failed [U_]: the link cut (Link proxy swallows the bytes), md fails
 *    the leg after the NBD timeout and the server goes on alone: md without
 *    its remote leg, and the agent trying to reconnect beside it.
 *
 * The first sample of each phase warms up and is dropped. With
 * `--write-behind N`, a second server (fresh disk and export) repeats 1 and
 * 2 with md's write-behind (N writes in flight to the NBD leg): its own
 * unmirrored baseline, its own ratio. Each sample ends with fsync, a flush
 * md passes to both legs: a workload of flushed writes still waits on the
 * leg with write-behind.
 *
 * Under TCG (no /dev/kvm here) every figure is small in absolute terms: the
 * guest's CPU, its virtio disk and QEMU's user network are emulated, and the
 * NBD leg's TLS runs on the emulated CPU too. The ratios are the point.
 *
 * Writes bench/server-protect/results/latest.json. Not part of `npm test`.
 * Needs root (the boot disk's loop mounts), qemu-system-x86, e2fsprogs,
 * openssl. About 3 minutes with the defaults on 2 shared cores:
 *
 *   node_modules/.bin/node bench/server-protect/run.ts [--mib 8] [--samples 8]
 *     [--write-behind 256] [--no-degraded]
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  bootGuest,
  buildGuestImage,
  buildServerBootDisk,
  copyServerBootDisk,
  type GuestHandle,
  SERVER_BOOT_DISK,
  type ServerBootDisk,
} from '../../src/guest/index.ts';
import { createSparseImage } from '../../src/storage/sparse-image.ts';
import { Link } from '../../src/testing/link-proxy.ts';
import { AgentEndpoint } from '../../src/testing/server-agent-endpoint.ts';
import {
  exportPort,
  GUEST_IP,
  HOST_FROM_GUEST,
  log,
  MiB,
  NIC,
  serverConfig,
  startTlsSite,
  type TlsSite,
} from '../../src/testing/server-site.ts';
import { writeResults } from '../write-results.ts';

const { values: flags } = parseArgs({
  options: {
    mib: { type: 'string', default: '8' },
    samples: { type: 'string', default: '8' },
    'write-behind': { type: 'string', default: '0' },
    'no-degraded': { type: 'boolean', default: false },
  },
});
const mib = Number(flags.mib);
const samples = Number(flags.samples);
const writeBehind = Number(flags['write-behind']);
const degraded = !flags['no-degraded'];
if (!(Number.isInteger(mib) && mib > 0 && mib <= 32)) throw new Error('--mib must be 1..32');
if (!(Number.isInteger(samples) && samples > 0)) throw new Error('--samples must be a positive integer');
const WAIT_MS = 300_000;
const DATA_DEVICE = `/dev/vda${SERVER_BOOT_DISK.data.partition}`;

type Phase = 'unmirrored' | '[UU]' | '[U_]';
interface Throughput {
  mibPerS: number;
  samples: number;
  /** Each sample's milliseconds for the write of `mib` MiB. */
  ms: number[];
}

/** MiB/s of `tput <phase> <bytes> <ms>` lines from index `from`, the first one dropped (warm-up). */
function throughput(lines: readonly string[], phase: Phase, from: number, to = lines.length): Throughput {
  const taken = lines
    .slice(from, to)
    .map((l) => /^tput (\S+) (\d+) (\d+)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null && m[1] === phase)
    .slice(1);
  const bytes = taken.reduce((sum, m) => sum + Number(m[2]), 0);
  const ms = taken.map((m) => Number(m[3]));
  const total = ms.reduce((a, b) => a + b, 0);
  return { mibPerS: total > 0 ? bytes / MiB / (total / 1000) : 0, samples: ms.length, ms };
}

/** Waits until `count` + 1 (the warm-up) samples of `phase` were printed from index `from`. */
async function samplesOf(guest: GuestHandle, phase: Phase, from: number): Promise<number> {
  const wanted = samples + 1;
  let seen = 0;
  let at = from;
  const line = new RegExp(`^tput ${phase.replace(/[[\]]/g, '\\$&')} `);
  while (seen < wanted) {
    await guest.waitForLine(line, WAIT_MS, at);
    at = guest.lines().findIndex((l, i) => i >= at && line.test(l)) + 1;
    seen++;
  }
  return at;
}

/**
 * The operator's enrolment, run once at first boot with the system partition
 * mounted: the unmirrored phase on the data partition first (the same loop
 * as guest-init.sh's tput), then the enrolment.
 */
function onboardScript(enrol: string): string {
  return `mkdir -p /run/unmirrored
mount -t ext4 ${DATA_DEVICE} /run/unmirrored || exit 1
uptime_ms() {
  read -r up _ </proc/uptime
  frac=\${up#*.}
  ms=$((\${up%.*} * 1000 + (1$frac - 100) * 10))
}
i=0
while [ $i -le ${samples} ]; do
  uptime_ms
  t0=$ms
  dd if=/dev/zero of=/run/unmirrored/tput.dat bs=1M count=${mib} oflag=direct conv=notrunc,fsync 2>/dev/null || break
  uptime_ms
  echo "tput unmirrored $((${mib} * 1048576)) $((ms - t0))"
  sleep 1
  i=$((i + 1))
done
umount /run/unmirrored
${enrol}
`;
}

interface ServerRun {
  writeBehind: number;
  unmirrored: Throughput;
  mirrored: Throughput;
  degraded?: Throughput;
  /** Spawn to md's initial resync of the whole disk done (includes the unmirrored phase and the enrolment). */
  secondsToSynced: number;
  /** The initial resync alone: md created to synced. */
  secondsResync: number;
  /** The export's journal at the end: bytes it holds, and whether it stayed a journal (not its overflow bitmap). */
  journal: { usedBytes: number; mode: 'journal' | 'bitmap' };
}

async function serverRun(
  site: TlsSite,
  bootDisk: ServerBootDisk,
  dir: string,
  name: string,
  writeBehindWrites: number,
  withDegraded: boolean,
): Promise<ServerRun> {
  const leg = join(dir, `${name}-leg.img`);
  await createSparseImage(leg, SERVER_BOOT_DISK.sizeBytes);
  const { uris } = await site.service.attach(name, {
    imagePath: leg,
    journalDir: join(dir, `${name}.journal`),
  });
  const link = await Link.open(exportPort(uris));
  const token = `bench-token-${name}`;
  const endpoint = await AgentEndpoint.start({
    caKey: site.caKey,
    caCert: site.caCert,
    // Reports rarely: each one forks openssl on the emulated CPU beside the workload.
    configLines: (agentPort) =>
      serverConfig({
        machineId: name,
        nbdPort: link.port,
        agentPort,
        sizeBytes: SERVER_BOOT_DISK.sizeBytes,
        writeBehind: writeBehindWrites,
        reportSeconds: 600,
      }),
    machineId: name,
    token,
  });
  const local = join(dir, `${name}.img`);
  await copyServerBootDisk(bootDisk, local, {
    guest: { workload: 'idle', ip: GUEST_IP },
    cmdline: [`haven.tput=${mib}`],
    files: {
      '/etc/haven-ca.pem': await readFile(site.caCert),
      '/etc/haven-onboard': onboardScript(
        `haven-server-agent enrol --agent ${HOST_FROM_GUEST}:${endpoint.port} --tls-hostname localhost --ca-file /etc/haven-ca.pem --token ${token}`,
      ),
    },
  });
  const started = Date.now();
  const guest = bootGuest({ bootFromDisk: true, disk: { file: local }, qemuArgs: NIC });
  try {
    await guest.waitForLine(/^server: onboarding$/, WAIT_MS);
    log(`${name}: unmirrored phase (before enrolment), ${samples} + 1 samples of ${mib} MiB`);
    const unmirroredTo = await samplesOf(guest, 'unmirrored', 0);
    const unmirrored = throughput(guest.lines(), 'unmirrored', 0, unmirroredTo);
    log(`${name}: unmirrored ${unmirrored.mibPerS.toFixed(2)} MiB/s; enrolling`);
    const enrolled = await guest.waitForLine(/^(server: enrolled|server: onboarding failed)$/, WAIT_MS);
    if (enrolled[0] !== 'server: enrolled') throw new Error(guest.lines().slice(-10).join('\n'));
    await guest.waitForLine(/^md: created raid1 metadata 1\.0 on \/dev\/vda and \/dev\/nbd0/, WAIT_MS);
    const createdAt = Date.now();
    await guest.waitForLine(/^md: synced$/, WAIT_MS);
    const syncedAt = Date.now();
    const mirroredFrom = guest.lines().length;
    log(
      `${name}: whole disk resynced in ${((syncedAt - createdAt) / 1000).toFixed(1)} s; mirrored phase${writeBehindWrites > 0 ? ` (write-behind ${writeBehindWrites})` : ' (synchronous)'}`,
    );
    const mirroredTo = await samplesOf(guest, '[UU]', mirroredFrom);
    const mirrored = throughput(guest.lines(), '[UU]', mirroredFrom, mirroredTo);
    log(`${name}: mirrored ${mirrored.mibPerS.toFixed(2)} MiB/s`);
    let alone: Throughput | undefined;
    if (withDegraded) {
      link.cut();
      const cutFrom = guest.lines().length;
      await guest.waitForLine(/^md: active raid1 \[U_\]$/, WAIT_MS, cutFrom);
      const aloneFrom = guest.lines().length;
      log(`${name}: link cut, md failed the leg; leg-failed phase`);
      const aloneTo = await samplesOf(guest, '[U_]', aloneFrom);
      alone = throughput(guest.lines(), '[U_]', aloneFrom, aloneTo);
      log(`${name}: leg failed ${alone.mibPerS.toFixed(2)} MiB/s`);
    }
    await site.service.backend(name).flush();
    return {
      writeBehind: writeBehindWrites,
      unmirrored,
      mirrored,
      ...(alone ? { degraded: alone } : {}),
      secondsToSynced: (syncedAt - started) / 1000,
      secondsResync: (syncedAt - createdAt) / 1000,
      journal: {
        usedBytes: site.service.journalStatus(name).usedBytes,
        mode: site.service.journalStatus(name).mode,
      },
    };
  } finally {
    guest.kill();
    await guest.exited;
    await endpoint.close();
    await link.close();
    await site.service.detach(name);
  }
}

const dir = await mkdtemp(join(tmpdir(), 'haven-bench-server-protect-'));
const started = Date.now();
const runs: ServerRun[] = [];
let site: TlsSite | null = null;
try {
  log('server guest image and boot disk (cached after the first build)');
  const image = await buildGuestImage({ variant: 'server', log });
  const bootDisk = await buildServerBootDisk(image, { log });
  site = await startTlsSite(dir);
  runs.push(await serverRun(site, bootDisk, dir, 'server-sync', 0, degraded));
  if (writeBehind > 0) runs.push(await serverRun(site, bootDisk, dir, 'server-wb', writeBehind, false));
} finally {
  await site?.service.close();
  await rm(dir, { recursive: true, force: true });
}

const fmt = (n: number, d = 2) => n.toFixed(d);
console.log(
  `\nserver guest (TCG), one timed O_DIRECT write of ${mib} MiB (1 MiB blocks, fsync) a second; ${samples} samples a phase after one warm-up:`,
);
console.log('phase                                      MiB/s   ms/write (median)   ratio to unmirrored');
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
for (const r of runs) {
  const rows: Array<[string, Throughput]> = [
    ['unmirrored (before enrolment, no md)', r.unmirrored],
    [
      r.writeBehind > 0 ? `mirrored [UU], write-behind ${r.writeBehind}` : 'mirrored [UU], synchronous',
      r.mirrored,
    ],
    ...(r.degraded ? [['leg failed [U_] (link cut)', r.degraded] as [string, Throughput]] : []),
  ];
  for (const [label, t] of rows)
    console.log(
      `${label.padEnd(42)} ${fmt(t.mibPerS).padStart(6)}   ${String(median(t.ms)).padStart(17)}   ${fmt(t.mibPerS / r.unmirrored.mibPerS)}×`,
    );
  console.log(
    `  initial replication (md's resync of the whole ${SERVER_BOOT_DISK.sizeBytes / MiB} MiB disk): ${fmt(r.secondsResync, 1)} s; the export's journal holds ${fmt(r.journal.usedBytes / MiB, 1)} MiB (${r.journal.mode} mode)`,
  );
}
console.log(`\nwhole run ${fmt((Date.now() - started) / 1000, 0)} s`);
await writeResults(join(dirname(fileURLToPath(import.meta.url))), {
  virtualization: 'tcg',
  settings: { mib, samples, writeBehind, degraded, diskBytes: SERVER_BOOT_DISK.sizeBytes },
  runs,
});
