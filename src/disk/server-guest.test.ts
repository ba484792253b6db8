/**
 * The guest that plays a protected physical Linux server (the server variant
 * of src/guest's image, running the server agent of src/server-agent): its
 * own disk /dev/vda mirrored by md raid1 onto an export of the disk service
 * over TLS through QEMU's user network, the NBD leg write-mostly with an
 * nbd-client timeout. The export's journal receives the server's writes, the
 * link is cut under writes (the server goes on alone, md degrades, the agent
 * reports it) and restored (the leg is re-added and only what the
 * write-intent bitmap marked is resent); the agent obeys a shutdown. The
 * agent's HTTPS peer is AgentEndpoint, the contract's two calls in miniature.
 * Debian: qemu-system-x86, e2fsprogs, openssl (and what src/guest needs).
 */
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { checkVmBoot } from '../filesystem/index.ts';
import {
  bootGuest,
  buildGuestImage,
  buildServerBootDisk,
  checkDataDisk,
  copyServerBootDisk,
  formatDataDisk,
  type GuestImage,
  initramfsWithFiles,
  SERVER_BOOT_DISK,
} from '../guest/index.ts';
import { createSparseImage } from '../storage/sparse-image.ts';
import { readJournal, replay } from '../testing/disk-service.fixture.ts';
import { Link } from '../testing/link-proxy.ts';
import { AgentEndpoint } from '../testing/server-agent-endpoint.ts';
import {
  exportPort,
  GUEST_IP,
  HOST_FROM_GUEST,
  MiB,
  NIC,
  serverConfig,
  startTlsSite,
} from '../testing/server-site.ts';

const WAIT_MS = 120_000;
const DISK_BYTES = 64 * MiB;
// md metadata 1.0 and its bitmap sit at the end of each member: the filesystem leaves room.
const FS_BYTES = 60 * MiB;
const NBD_TIMEOUT_S = 5;
const REPORT_S = 2;

/** The config lines of the contract's enrolment answer, for one disk /dev/vda. */
const configOf = (machineId: string, nbdPort: number, agentPort: number, sizeBytes: number): string[] =>
  serverConfig({
    machineId,
    nbdPort,
    agentPort,
    sizeBytes,
    nbdTimeoutSeconds: NBD_TIMEOUT_S,
    reportSeconds: REPORT_S,
  });

let root: string;
let image: GuestImage;
let buildMs: number;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'haven-server-guest-'));
  const started = Date.now();
  image = await buildGuestImage({ variant: 'server' });
  buildMs = Date.now() - started;
});
after(() => rm(root, { recursive: true, force: true }));

/** MiB/s of the guest's `tput <state> <bytes> <ms>` lines in one mirror state, within a window of console lines. */
function throughput(lines: readonly string[], state: '[UU]' | '[U_]'): { mibPerS: number; samples: number } {
  let bytes = 0;
  let ms = 0;
  let samples = 0;
  for (const line of lines) {
    const m = /^tput (\[[U_]+\]) (\d+) (\d+)$/.exec(line);
    if (!m || m[1] !== state) continue;
    bytes += Number(m[2]);
    ms += Number(m[3]);
    samples++;
  }
  return { mibPerS: ms > 0 ? bytes / MiB / (ms / 1000) : 0, samples };
}

test('a server guest mirrors its disk onto a disk service export, degrades when the link is cut and resyncs only what changed; its agent reports each state and obeys a shutdown', async () => {
  const local = join(root, 'server-vda.img');
  await formatDataDisk(local, { sizeBytes: DISK_BYTES, filesystemBytes: FS_BYTES });
  const exported = join(root, 'primary.img');
  await createSparseImage(exported, DISK_BYTES);
  const journalDir = join(root, 'primary.journal');
  // TLS as `haven disk serve --listen` requires it: a client certificate signed by the CA.
  const { caKey, caCert, clientKey, clientCert, service } = await startTlsSite(join(root, 'tls'));
  const { uris } = await service.attach('server0', { imagePath: exported, journalDir });
  const link = await Link.open(exportPort(uris));
  // Enrolled already (the boot-disk test enrols): the state dir rides in the initramfs.
  const endpoint = await AgentEndpoint.start({
    caKey,
    caCert,
    configLines: () => [],
    machineId: 'server0',
    token: 'unused',
  });
  const config = configOf('server0', link.port, endpoint.port, DISK_BYTES);
  const initramfs = join(root, 'initramfs-tls.gz');
  await initramfsWithFiles(
    image,
    {
      '/etc/haven/server.conf': `${config.join('\n')}\n`,
      '/etc/haven/tls/ca.pem': await readFile(caCert),
      '/etc/haven/tls/cert.pem': await readFile(clientCert),
      '/etc/haven/tls/key.pem': await readFile(clientKey),
    },
    initramfs,
  );
  try {
    const started = Date.now();
    const guest = bootGuest({
      ...image,
      initramfs,
      disk: { file: local },
      guest: { rate: 10, ip: GUEST_IP },
      cmdline: ['haven.tput=4'],
      qemuArgs: NIC,
    });
    try {
      await guest.waitForLine(/^haven-guest booted$/, WAIT_MS);
      const bootedMs = Date.now() - started;
      const nbd = await guest.waitForLine(/^nbd: (connected|cannot connect) .*$/, WAIT_MS);
      assert.match(
        nbd[0],
        /^nbd: connected 10\.0\.2\.2:\d+\/server0 over TLS$/,
        guest.lines().slice(-5).join('\n'),
      );
      await guest.waitForLine(/^md: created raid1 metadata 1\.0 on \/dev\/vda and \/dev\/nbd0/, WAIT_MS);
      await guest.waitForLine(/^recovered 0 ok$/, WAIT_MS);
      const mountedMs = Date.now() - started;
      // The initial replication is the mirror's own resync.
      await guest.waitForLine(/^md: synced$/, WAIT_MS);
      const syncedMs = Date.now() - started;
      const whole = await endpoint.waitForReport(
        (r) => r.state === 'running' && r.disks[0]?.legs === '[UU]' && r.disks[0]?.action === 'idle',
        WAIT_MS,
      );
      assert.deepEqual(
        { ...whole.disks[0], dirty: undefined },
        { diskId: 'disk0', array: '/dev/md0', legs: '[UU]', action: 'idle', percent: '-', dirty: undefined },
      );
      console.log(
        `server guest: image ${image.cached ? 'cached' : 'built'} in ${buildMs} ms; booted ${bootedMs} ms, /data on md ${mountedMs} ms, initial resync done ${syncedMs} ms after spawn`,
      );
      // Throughput windows start after a line, so no sample began before the state did.
      const mirroredFrom = guest.lines().length;
      await guest.waitForLine(/^tput \[UU\] /, WAIT_MS, mirroredFrom);
      await guest.waitForLine(/^tput \[UU\] /, WAIT_MS, guest.lines().length);
      await guest.waitForLine(/^tput \[UU\] /, WAIT_MS, guest.lines().length);
      assert.ok(
        service.journalStatus('server0').lastWriteAt !== null,
        'the export journaled the server’s writes',
      );

      // Cut the link under writes: after the NBD timeout md fails the leg and the server goes on alone.
      const durableBefore = Number(
        (await guest.waitForLine(/^durable (\d+)$/, WAIT_MS, guest.lines().length))[1],
      );
      const cutAt = Date.now();
      link.cut();
      const mirroredTo = guest.lines().length;
      let from = mirroredTo;
      const reportsAtCut = endpoint.reports.length;
      await guest.waitForLine(/^md: active raid1 \[U_\]$/, WAIT_MS, from);
      const degradedMs = Date.now() - cutAt;
      // The agent's own link (HTTPS) stays up: it tells the host the mirror is degraded.
      await endpoint.waitForReport(
        (r) => r.disks[0]?.legs === '[U_]' && r.disks[0]?.action === 'degraded',
        WAIT_MS,
        reportsAtCut,
      );
      const aloneFrom = guest.lines().length;
      await guest.waitForLine(/^tput \[U_\] /, WAIT_MS, guest.lines().length);
      await guest.waitForLine(/^tput \[U_\] /, WAIT_MS, guest.lines().length);
      await guest.waitForLine(/^tput \[U_\] /, WAIT_MS, guest.lines().length);
      const durableCut = Number(
        (await guest.waitForLine(/^durable (\d+)$/, WAIT_MS, guest.lines().length))[1],
      );
      assert.ok(
        durableCut > durableBefore + 5,
        `records went on while the link was cut (${durableBefore} → ${durableCut})`,
      );
      const cutMs = Date.now() - cutAt;

      // Restore: the guest reconnects, re-adds the leg, md resyncs what its bitmap marked.
      const seqAtRestore = service.journalStatus('server0').nextSeq;
      const restoredAt = Date.now();
      const aloneTo = guest.lines().length;
      link.restore();
      from = guest.lines().length;
      const dirty = await guest.waitForLine(
        /^md: bitmap dirty (\d+) of (\d+) chunks of (\d+)KB$/,
        WAIT_MS,
        from,
      );
      await guest.waitForLine(/^md: re-added \/dev\/nbd0$/, WAIT_MS, from);
      await guest.waitForLine(/^md: synced$/, WAIT_MS, from);
      const resyncMs = Date.now() - restoredAt;
      const seqAtSynced = service.journalStatus('server0').nextSeq;
      await guest.waitForLine(/^durable \d+$/, WAIT_MS, guest.lines().length);

      // The host's ordered shutdown: a last report says stopping, the workload
      // stops, /data is unmounted, md stopped, the server powers off.
      const reportsAtShutdown = endpoint.reports.length;
      const shutdownAt = Date.now();
      // Two commands in one answer, obeyed in order; a disk the server lacks is named back.
      endpoint.queue('readd disk9');
      endpoint.queue('shutdown');
      await guest.waitForLine(/^agent: readd names no disk of this server: disk9$/, WAIT_MS, from);
      await guest.waitForLine(/^agent: shutdown requested$/, WAIT_MS, from);
      await endpoint.waitForReport((r) => r.state === 'stopping', WAIT_MS, reportsAtShutdown);
      await guest.waitForLine(/^powered off cleanly$/, WAIT_MS);
      await guest.exited;
      const shutdownMs = Date.now() - shutdownAt;

      await service.backend('server0').flush();
      const records = await readJournal(journalDir);
      const resent = records
        .filter((r) => r.kind === 'write' && r.seq >= seqAtRestore && r.seq < seqAtSynced)
        .reduce((sum, r) => sum + r.length, 0);
      const [dirtyChunks, chunks, chunkKiB] = [Number(dirty[1]), Number(dirty[2]), Number(dirty[3])];
      const uu = throughput(guest.lines().slice(mirroredFrom, mirroredTo), '[UU]');
      const alone = throughput(guest.lines().slice(aloneFrom, aloneTo), '[U_]');
      console.log(
        [
          `server guest: link cut for ${cutMs} ms; md degraded ${degradedMs} ms after the cut (nbd timeout ${NBD_TIMEOUT_S} s)`,
          `server guest: bitmap ${dirtyChunks} of ${chunks} chunks of ${chunkKiB} KiB dirty; ${(resent / MiB).toFixed(2)} MiB written to the export in the ${resyncMs} ms from restore to synced (resync plus the workload's own writes), of a ${DISK_BYTES / MiB} MiB disk`,
          `server guest: ordered shutdown through the agent ${shutdownMs} ms from command queued to powered off (reports every ${REPORT_S} s)`,
          `server guest: O_DIRECT 4 MiB writes ${uu.mibPerS.toFixed(2)} MiB/s mirrored [UU] (${uu.samples} samples) vs ${alone.mibPerS.toFixed(2)} MiB/s alone [U_] (${alone.samples} samples)`,
        ].join('\n'),
      );
      assert.ok(
        dirtyChunks > 0 && dirtyChunks < chunks / 2,
        `bitmap: ${dirtyChunks} of ${chunks} chunks dirty`,
      );
      assert.ok(resent < DISK_BYTES / 2, `${resent} bytes resent after the link returned`);

      // The journal holds every write the export received, and the mirror is complete.
      assert.ok(
        replay(Buffer.alloc(DISK_BYTES), records).equals(await readFile(exported)),
        'the journal replays to the export',
      );
      const [mine, theirs] = [await readFile(local), await readFile(exported)];
      assert.ok(
        mine.subarray(0, FS_BYTES).equals(theirs.subarray(0, FS_BYTES)),
        'the export holds what the server’s disk holds',
      );
      const check = await checkDataDisk(exported);
      assert.equal(check.clean, true, check.output);
      assert.equal(check.journalReplayed, false, 'the ordered shutdown unmounts /data');
    } finally {
      guest.kill();
      await guest.exited;
    }

    // The next boot assembles the existing array from both legs and finds every record.
    const lastDurable = Math.max(
      ...guest
        .lines()
        .map((l) => /^durable (\d+)$/.exec(l)?.[1])
        .filter((n) => n !== undefined)
        .map(Number),
    );
    const again = bootGuest({
      ...image,
      initramfs,
      disk: { file: local },
      guest: { ip: GUEST_IP },
      qemuArgs: NIC,
    });
    try {
      await again.waitForLine(/^md: assembled \/dev\/md0 from \/dev\/vda \/dev\/nbd0$/, WAIT_MS);
      const recovered = await again.waitForLine(/^(recovered (\d+) ok|corrupt at .*)$/, WAIT_MS);
      assert.ok(Number(recovered[2]) >= lastDurable, `${recovered[0]}; record ${lastDurable} was durable`);
      await again.waitForLine(/^md: synced$/, WAIT_MS);
    } finally {
      again.kill();
      await again.exited;
    }
  } finally {
    await link.close();
    await endpoint.close();
    await service.close();
  }
});

test('a server booting from its own disk (BIOS) enrols at first boot, mirrors the whole disk; its replica boots alone as a VM with every record and the enrolment', async () => {
  const bootDisk = await buildServerBootDisk(image);
  const { caKey, caCert, service } = await startTlsSite(join(root, 'boot-tls'));
  const exported = join(root, 'boot-primary.img');
  await createSparseImage(exported, SERVER_BOOT_DISK.sizeBytes);
  const { uris } = await service.attach('server1', {
    imagePath: exported,
    journalDir: join(root, 'boot.journal'),
  });
  const token = 'one-time-enrolment-token';
  const endpoint = await AgentEndpoint.start({
    caKey,
    caCert,
    configLines: (agentPort) => configOf('server1', exportPort(uris), agentPort, SERVER_BOOT_DISK.sizeBytes),
    machineId: 'server1',
    token,
  });
  const local = join(root, 'boot-server.img');
  // What the operator types on the server, run once at its first boot; the
  // enrolment then lives on its disk, and the replica carries it too.
  await copyServerBootDisk(bootDisk, local, {
    guest: { rate: 10, ip: GUEST_IP },
    files: {
      '/etc/haven-ca.pem': await readFile(caCert),
      '/etc/haven-onboard': `haven-server-agent enrol --agent ${HOST_FROM_GUEST}:${endpoint.port} --tls-hostname localhost --ca-file /etc/haven-ca.pem --token ${token}\n`,
    },
  });
  let lastDurable = 0;
  try {
    const started = Date.now();
    const server = bootGuest({ bootFromDisk: true, disk: { file: local }, qemuArgs: NIC });
    try {
      await server.waitForLine(/^haven-guest booted$/, WAIT_MS);
      const bootedMs = Date.now() - started;
      await server.waitForLine(/^server: onboarding$/, WAIT_MS);
      const enrolled = await server.waitForLine(/^(enrolled as .*|haven-server-agent: .*)$/, WAIT_MS);
      assert.match(
        enrolled[0],
        /^enrolled as server1 \(server1\) with 10\.0\.2\.2:\d+; state in \/etc\/haven$/,
      );
      await server.waitForLine(/^server: enrolled$/, WAIT_MS);
      const enrolledMs = Date.now() - started;
      await server.waitForLine(/^md: created raid1 metadata 1\.0 on \/dev\/vda and \/dev\/nbd0/, WAIT_MS);
      await server.waitForLine(/^recovered 0 ok$/, WAIT_MS);
      await server.waitForLine(/^md: synced$/, WAIT_MS);
      const syncedMs = Date.now() - started;
      // The certificate issued at enrolment is what the reports (and the NBD leg) present.
      const report = await endpoint.waitForReport((r) => r.disks[0]?.legs === '[UU]', WAIT_MS);
      assert.equal(report.machine, 'server1');
      assert.equal(report.disks[0]?.diskId, 'disk0');
      console.log(
        `server boot disk: ${bootDisk.cached ? 'cached' : 'built'}; booted from disk (SeaBIOS, extlinux) ${bootedMs} ms, enrolled ${enrolledMs} ms, whole ${SERVER_BOOT_DISK.sizeBytes / MiB} MiB disk resynced ${syncedMs} ms after spawn`,
      );
      await server.waitForLine(/^durable 20$/, WAIT_MS);
    } finally {
      // Power loss: the replica is what the export received.
      server.kill();
      await server.exited;
    }
    lastDurable = Math.max(
      ...server
        .lines()
        .map((l) => /^durable (\d+)$/.exec(l)?.[1])
        .filter((n) => n !== undefined)
        .map(Number),
    );
  } finally {
    await endpoint.close();
    await service.close();
  }

  // The recovery site: a copy of the replica, no NBD leg, no network.
  const replica = join(root, 'boot-replica.img');
  await copyFile(exported, replica);
  const check = await checkVmBoot(replica);
  assert.equal(check.bootable, true, JSON.stringify(check.results, null, 2));
  const started = Date.now();
  const vm = bootGuest({ bootFromDisk: true, disk: { file: replica } });
  try {
    await vm.waitForLine(/^haven-guest booted$/, WAIT_MS);
    const bootedMs = Date.now() - started;
    // The enrolment came along on the system partition: no onboarding again,
    // and with no NBD leg to reach the agent assembles the array from the disk alone.
    await vm.waitForLine(/^md: assembled \/dev\/md0 from \/dev\/vda$/, WAIT_MS);
    const recovered = await vm.waitForLine(/^(recovered (\d+) ok|corrupt at .*)$/, WAIT_MS);
    assert.ok(Number(recovered[2]) >= lastDurable, `${recovered[0]}; record ${lastDurable} was durable`);
    assert.ok(!vm.lines().includes('server: onboarding'), 'the enrolment survived in the replica');
    console.log(
      `server boot disk: replica booted as a VM in ${bootedMs} ms, ${recovered[0]} (last durable ${lastDurable})`,
    );
  } finally {
    vm.kill();
    await vm.exited;
  }
});
