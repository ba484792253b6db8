/**
 * Failback onto the physical server, its time against the size of the
 * diverged data, with the server guest (src/guest's server variant booting
 * from its own 96 MiB BIOS disk, src/server-agent mirroring it with md onto
 * a DiskService export over TLS) and the recovery environment Haven builds
 * (src/server-agent/recovery-environment.ts).
 *
 * Once: the server runs mirrored until md's initial resync is done and is
 * shut down in order (a planned failover: md's bitmap clean). Its remote leg
 * is then what the replica held when it stopped.
 *
 * Per size N (`--sizes`, MiB): the failback export is that replica with an N
 * MiB file written into the data filesystem (debugfs, standing for what the
 * VM wrote at the recovery site: the file's blocks and the filesystem's
 * metadata); the diverged list is the 64 KiB chunks that differ. The server,
 * its disk as it stopped, boots the recovery environment (network boot: iPXE
 * over QEMU's virtio-net, TFTP from QEMU's user network standing for the
 * site's boot server; `--direct-boot` loads the kernel directly, standing for
 * a boot medium), which copies the list from the export through md and
 * reboots; then the server boots its own system, re-adds its stale remote leg
 * and resyncs what md's bitmap marked, until both legs are whole ([UU],
 * "md: synced"). Printed per size: the environment's boot (spawn to the
 * export connected), the copy, the server's own boot until [UU], the total;
 * a least-squares line through the totals (seconds per MiB, and the fixed
 * part).
 *
 * The peer: the same environment told to copy the whole disk (clipped by it
 * to md's array) for the smallest size's export, i.e. what a failback
 * without Haven's diverged list costs; its own boot then resyncs the whole
 * array onto the remote leg as well.
 *
 * Under TCG every figure is large in absolute terms (the guest's CPU, disk
 * and network are emulated); the slope and the ratio to the whole copy are
 * the point. The disk is the fixed 96 MiB boot disk (61 MiB data partition),
 * so sizes stay under about 48 MiB.
 *
 * Writes bench/server-failback/results/latest.json. Not part of `npm test`.
 * Needs root, qemu-system-x86, ipxe-qemu (else pass --direct-boot),
 * e2fsprogs, openssl. About 5 minutes with the defaults on 2 shared cores:
 *
 *   node_modules/.bin/node bench/server-failback/run.ts [--sizes 1,8,32]
 *     [--direct-boot] [--no-whole]
 */
import { execFile } from 'node:child_process';
import { access, copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import {
  bootGuest,
  buildGuestImage,
  buildServerBootDisk,
  copyServerBootDisk,
  type GuestHandle,
  SERVER_BOOT_DISK,
} from '../../src/guest/index.ts';
import { QmpClient } from '../../src/hypervisor/qmp-client.ts';
import { regionBytes } from '../../src/replica/regions.ts';
import {
  type ByteRange,
  buildRecoveryEnvironment,
  mergeRanges,
} from '../../src/server-agent/recovery-environment.ts';
import { createSparseImage } from '../../src/storage/sparse-image.ts';
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

const run = promisify(execFile);
const { values: flags } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1,8,32' },
    'direct-boot': { type: 'boolean', default: false },
    'no-whole': { type: 'boolean', default: false },
  },
});
const sizes = flags.sizes
  .split(',')
  .filter((s) => s !== '')
  .map(Number);
if (sizes.some((n) => !(Number.isInteger(n) && n > 0 && n <= 48)))
  throw new Error('--sizes are whole MiB, 1..48 (the data partition holds 61 MiB)');
const WAIT_MS = 300_000;
const CHUNK = 64 * 1024;
const SERVER = 'server1';
/** iPXE for QEMU's virtio-net (Debian ipxe-qemu); it matches the modern device only. */
const PXE_ROM = '/usr/lib/ipxe/qemu/pxe-virtio.rom';
const networkBoot =
  !flags['direct-boot'] &&
  (await access(PXE_ROM).then(
    () => true,
    () => false,
  ));

/** The 64 KiB chunks in which two images differ, as ranges. */
async function differingChunks(a: string, b: string): Promise<ByteRange[]> {
  const [x, y] = [await readFile(a), await readFile(b)];
  const ranges: ByteRange[] = [];
  for (let offset = 0; offset < x.length; offset += CHUNK) {
    const end = Math.min(offset + CHUNK, x.length);
    if (!x.subarray(offset, end).equals(y.subarray(offset, end)))
      ranges.push({ offset, length: end - offset });
  }
  return mergeRanges(ranges);
}

/** What the VM wrote at the recovery site: an N MiB file in the data filesystem of a disk image. */
async function writeDivergedFile(disk: string, mib: number, dir: string): Promise<void> {
  const blob = join(dir, `diverged-${mib}.bin`);
  const bytes = Buffer.alloc(mib * MiB);
  for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, i);
  await writeFile(blob, bytes);
  const { stderr } = await run('debugfs', [
    '-w',
    '-R',
    `write ${blob} diverged-${mib}.bin`,
    `${disk}?offset=${SERVER_BOOT_DISK.data.offsetBytes}`,
  ]);
  // debugfs reports a failed request on stderr and still exits 0.
  if (/error|could not|no space/i.test(stderr)) throw new Error(`debugfs: ${stderr}`);
  await rm(blob);
}

async function powerDown(guest: GuestHandle, qmpSocket: string): Promise<void> {
  const qmp = await QmpClient.connect(qmpSocket);
  try {
    await qmp.execute('system_powerdown');
  } finally {
    await qmp.close();
  }
  await guest.waitForLine(/^powered off cleanly$/, WAIT_MS);
  await guest.exited;
}

interface Failback {
  /** MiB written at the recovery site; `whole`: the environment told to copy everything. */
  divergedMiB: number;
  whole: boolean;
  /** The diverged list (64 KiB chunks that differ), merged. */
  divergedBytes: number;
  ranges: number;
  /** What the environment copied (the list and md's dirty chunks, clipped to the array). */
  copiedBytes: number;
  bitmapDirtyChunks: number;
  boot: 'network (iPXE, TFTP)' | 'direct kernel';
  /** Environment spawned to the failback export connected (firmware, iPXE, kernel, network, NBD over TLS). */
  envBootSeconds: number;
  /** The copy as the environment times it. */
  copySeconds: number;
  /** Environment spawned to its reboot (QEMU ends: -no-reboot). */
  envSeconds: number;
  /** The server's own boot, spawned to its arrays whole ([UU], md synced). */
  ownBootSeconds: number;
  /** Of which md's resync of the re-added remote leg (re-added to synced). */
  legResyncSeconds: number;
  /** Environment spawned to the server's arrays whole. */
  totalSeconds: number;
  /** The server's own boot found its records intact. */
  recovered: string;
}

async function failback(
  site: TlsSite,
  files: { serverDisk: string; replica: string },
  mib: number,
  whole: boolean,
  dir: string,
): Promise<Failback> {
  const tag = whole ? `whole-${mib}` : String(mib);
  const local = join(dir, `server-${tag}.img`);
  const leg = join(dir, `leg-${tag}.img`);
  const exported = join(dir, `failback-${tag}.img`);
  await run('cp', ['--sparse=always', files.serverDisk, local]);
  await run('cp', ['--sparse=always', files.replica, leg]);
  await run('cp', ['--sparse=always', files.replica, exported]);
  await writeDivergedFile(exported, mib, dir);
  const diverged = await differingChunks(files.replica, exported);
  const divergedBytes = regionBytes(diverged);
  // The server's remote leg (stale: it holds the replica as the server stopped) and the failback export.
  const legExport = await site.service.attach(SERVER, {
    imagePath: leg,
    journalDir: join(dir, `leg-${tag}.journal`),
  });
  const name = `failback-${tag}`;
  await site.service.attach(name, { imagePath: exported, journalDir: join(dir, `${name}.journal`) });
  const port = exportPort(legExport.uris);
  try {
    const envDir = join(dir, `env-${tag}`);
    const env = await buildRecoveryEnvironment(
      {
        export: {
          address: HOST_FROM_GUEST,
          port,
          tlsHostname: 'localhost',
          caPem: await readFile(site.caCert, 'utf8'),
          client: {
            certPem: await readFile(site.clientCert, 'utf8'),
            keyPem: await readFile(site.clientKey, 'utf8'),
          },
        },
        disks: [
          {
            device: '/dev/vda',
            array: '/dev/md0',
            exportName: name,
            ranges: whole ? [{ offset: 0, length: SERVER_BOOT_DISK.sizeBytes }] : diverged,
          },
        ],
      },
      envDir,
    );
    log(
      `${tag}: ${(divergedBytes / MiB).toFixed(2)} MiB diverged in ${diverged.length} ranges; the environment copies ${whole ? 'the whole disk' : 'the list'}`,
    );
    const envAt = Date.now();
    const recovery = networkBoot
      ? bootGuest({
          bootFromDisk: true,
          disk: { file: local },
          qemuArgs: [
            '-netdev',
            `user,id=n0,tftp=${envDir},bootfile=boot.ipxe`,
            '-device',
            `virtio-net-pci,netdev=n0,romfile=${PXE_ROM},disable-legacy=on`,
            '-boot',
            'n',
          ],
        })
      : bootGuest({
          kernel: env.kernel,
          initramfs: env.initramfs,
          disk: { file: local },
          cmdline: env.cmdline.split(' '),
          qemuArgs: NIC,
        });
    let connectedAt: number;
    let done: RegExpMatchArray;
    let dirty: RegExpMatchArray;
    try {
      await recovery.waitForLine(/^failback: connected /, WAIT_MS);
      connectedAt = Date.now();
      dirty = await recovery.waitForLine(/^failback: bitmap dirty (\d+) of (\d+) chunks/, WAIT_MS);
      done = await recovery.waitForLine(/^(failback: done (\d+) in (\d+) ms|failback: failed: .*)$/, WAIT_MS);
      if (!done[2]) throw new Error(done[0]);
      await recovery.exited;
    } finally {
      recovery.kill();
      await recovery.exited;
    }
    const envEndAt = Date.now();
    log(`${tag}: ${done[0]}; the server boots its own system`);
    // Never a false figure: the server's disk now holds what the export holds wherever it diverged.
    const [mine, theirs] = [await readFile(local), await readFile(exported)];
    const wrong = diverged.find(
      (r) =>
        !mine.subarray(r.offset, r.offset + r.length).equals(theirs.subarray(r.offset, r.offset + r.length)),
    );
    if (wrong)
      throw new Error(`${tag}: the server's disk differs from the export at ${wrong.offset}+${wrong.length}`);

    const own = bootGuest({ bootFromDisk: true, disk: { file: local }, qemuArgs: NIC });
    try {
      await own.waitForLine(/^md: assembled \/dev\/md0 from \/dev\/vda \/dev\/nbd0$/, WAIT_MS);
      await own.waitForLine(/^md: re-added \/dev\/nbd0$/, WAIT_MS);
      const readdedAt = Date.now();
      const recovered = await own.waitForLine(/^(recovered \d+ ok|corrupt at .*)$/, WAIT_MS);
      await own.waitForLine(/^md: synced$/, WAIT_MS);
      const wholeAt = Date.now();
      log(
        `${tag}: ${recovered[0]}; both legs whole ${((wholeAt - envAt) / 1000).toFixed(1)} s after the environment's spawn`,
      );
      return {
        divergedMiB: mib,
        whole,
        divergedBytes,
        ranges: diverged.length,
        copiedBytes: Number(done[2]),
        bitmapDirtyChunks: Number(dirty[1]),
        boot: networkBoot ? 'network (iPXE, TFTP)' : 'direct kernel',
        envBootSeconds: (connectedAt - envAt) / 1000,
        copySeconds: Number(done[3]) / 1000,
        envSeconds: (envEndAt - envAt) / 1000,
        ownBootSeconds: (wholeAt - envEndAt) / 1000,
        legResyncSeconds: (wholeAt - readdedAt) / 1000,
        totalSeconds: (wholeAt - envAt) / 1000,
        recovered: recovered[0],
      };
    } finally {
      own.kill();
      await own.exited;
    }
  } finally {
    await site.service.detach(SERVER);
    await site.service.detach(name);
    for (const f of [local, leg, exported]) await rm(f, { force: true });
  }
}

/** Least squares y = fixed + slope·x. */
function line(points: Array<[number, number]>): { slope: number; fixed: number } {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  const slope = sxx > 0 ? points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0) / sxx : 0;
  return { slope, fixed: my - slope * mx };
}

const dir = await mkdtemp(join(tmpdir(), 'haven-bench-server-failback-'));
const started = Date.now();
const results: Failback[] = [];
let site: TlsSite | null = null;
let endpoint: AgentEndpoint | null = null;
try {
  log('server guest image, boot disk and recovery environment (cached after the first build)');
  const image = await buildGuestImage({ variant: 'server', log });
  const bootDisk = await buildServerBootDisk(image, { log });
  site = await startTlsSite(dir);
  endpoint = await AgentEndpoint.start({
    caKey: site.caKey,
    caCert: site.caCert,
    configLines: () => [],
    machineId: SERVER,
    token: 'unused',
  });
  // The server, enrolled already: its state rides in the boot disk's site initrd.
  const replica = join(dir, 'replica.img');
  await createSparseImage(replica, SERVER_BOOT_DISK.sizeBytes);
  const { uris } = await site.service.attach(SERVER, {
    imagePath: replica,
    journalDir: join(dir, 'replica.journal'),
  });
  const serverDisk = join(dir, 'server.img');
  await copyServerBootDisk(bootDisk, serverDisk, {
    guest: { rate: 5, ip: GUEST_IP },
    files: {
      '/etc/haven/server.conf': `${serverConfig({
        machineId: SERVER,
        nbdPort: exportPort(uris),
        agentPort: endpoint.port,
        sizeBytes: SERVER_BOOT_DISK.sizeBytes,
        reportSeconds: 600,
      }).join('\n')}\n`,
      '/etc/haven/tls/ca.pem': await readFile(site.caCert),
      '/etc/haven/tls/cert.pem': await readFile(site.clientCert),
      '/etc/haven/tls/key.pem': await readFile(site.clientKey),
    },
  });
  log('the server runs mirrored until the initial resync is done, then shuts down in order');
  const qmpSocket = join(dir, 'server-qmp.sock');
  const server = bootGuest({ bootFromDisk: true, disk: { file: serverDisk }, qmpSocket, qemuArgs: NIC });
  try {
    await server.waitForLine(/^md: created raid1 metadata 1\.0 on \/dev\/vda and \/dev\/nbd0/, WAIT_MS);
    await server.waitForLine(/^md: synced$/, WAIT_MS);
    await server.waitForLine(/^durable \d+$/, WAIT_MS, server.lines().length);
    await powerDown(server, qmpSocket);
  } finally {
    server.kill();
    await server.exited;
  }
  await site.service.detach(SERVER);
  const stopped = join(dir, 'replica-at-stop.img');
  await copyFile(replica, stopped);

  for (const mib of sizes)
    results.push(await failback(site, { serverDisk, replica: stopped }, mib, false, dir));
  if (!flags['no-whole'])
    results.push(await failback(site, { serverDisk, replica: stopped }, Math.min(...sizes), true, dir));
} finally {
  await endpoint?.close();
  await site?.service.close();
  await rm(dir, { recursive: true, force: true });
}

const fmt = (n: number, d = 1) => n.toFixed(d);
console.log(
  `\nfailback onto the server (TCG), ${SERVER_BOOT_DISK.sizeBytes / MiB} MiB disk, environment boot ${results[0]?.boot}:`,
);
console.log(
  `${'diverged'.padEnd(29)}${'copied'.padStart(10)}  env boot    copy  env total  own boot to [UU] (leg resync)   total`,
);
for (const r of results)
  console.log(
    `${`${fmt(r.divergedBytes / MiB, 2)} MiB${r.whole ? ', whole disk copied' : ''}`.padEnd(29)}${`${fmt(r.copiedBytes / MiB, 2)} MiB`.padStart(10)} ${fmt(r.envBootSeconds).padStart(7)} s ${fmt(r.copySeconds).padStart(5)} s ${fmt(r.envSeconds).padStart(8)} s ${fmt(r.ownBootSeconds).padStart(10)} s (${fmt(r.legResyncSeconds).padStart(4)} s) ${fmt(r.totalSeconds).padStart(14)} s`,
  );
const listed = results.filter((r) => !r.whole);
const total = line(listed.map((r) => [r.divergedBytes / MiB, r.totalSeconds]));
const copy = line(listed.map((r) => [r.divergedBytes / MiB, r.copySeconds]));
if (listed.length >= 2)
  console.log(
    `total ≈ ${fmt(total.fixed)} s + ${fmt(total.slope, 2)} s/MiB diverged; of which the copy ≈ ${fmt(copy.fixed)} s + ${fmt(copy.slope, 2)} s/MiB`,
  );
const whole = results.find((r) => r.whole);
const smallest = listed.find((r) => r.divergedMiB === whole?.divergedMiB);
if (whole && smallest)
  console.log(
    `whole-disk copy (the peer: a failback without the diverged list) for the same ${fmt(smallest.divergedBytes / MiB, 2)} MiB diverged: total ${fmt(whole.totalSeconds)} s against ${fmt(smallest.totalSeconds)} s (${fmt(whole.totalSeconds / smallest.totalSeconds, 2)}×), copy ${fmt(whole.copySeconds)} s against ${fmt(smallest.copySeconds)} s`,
  );
console.log(`\nwhole run ${fmt((Date.now() - started) / 1000, 0)} s`);
await writeResults(dirname(fileURLToPath(import.meta.url)), {
  virtualization: 'tcg',
  settings: { sizes, networkBoot, diskBytes: SERVER_BOOT_DISK.sizeBytes },
  failbacks: results,
  ...(listed.length >= 2 ? { fit: { totalSeconds: total, copySeconds: copy } } : {}),
});
