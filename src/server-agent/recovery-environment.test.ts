/**
 * Failback onto the physical server: the server guest (booting from its own
 * disk, mirrored by md onto a disk service export over TLS) loses power; its
 * replica boots as a VM and writes more records; the VM's disk becomes the
 * failback export; the server network-boots the recovery environment, which
 * writes the diverged ranges (and md's dirty chunks) onto its own disk; the
 * server then boots its own system with every record the VM wrote, re-adds
 * the stale remote leg and resyncs it.
 * Debian: qemu-system-x86, ipxe-qemu (network boot), e2fsprogs.
 */
import assert from 'node:assert/strict';
import { access, copyFile, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { DiskService } from '../disk/disk-service.ts';
import {
  bootGuest,
  buildGuestImage,
  buildServerBootDisk,
  checkDataDisk,
  copyServerBootDisk,
  type GuestHandle,
  SERVER_BOOT_DISK,
} from '../guest/index.ts';
import { QmpClient } from '../hypervisor/qmp-client.ts';
import { clientCertificate, selfSignedCertificate } from '../testing/self-signed-certificate.ts';
import {
  type ByteRange,
  buildRecoveryEnvironment,
  failbackConfig,
  mergeRanges,
} from './recovery-environment.ts';

const WAIT_MS = 180_000;
const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;
const BITMAP_SETTLE_MS = 20_000;
const GUEST_IP = { address: '10.0.2.15/24', gateway: '10.0.2.2' };
const NIC = ['-netdev', 'user,id=n0', '-device', 'virtio-net-pci,netdev=n0'];
/** iPXE for QEMU's virtio-net (Debian ipxe-qemu); it matches the modern device only. */
const PXE_ROM = '/usr/lib/ipxe/qemu/pxe-virtio.rom';
/** Everything md's data covers on the server disk: both partitions (metadata 1.0 and its bitmap follow). */
const PARTITIONS_END = SERVER_BOOT_DISK.data.offsetBytes + SERVER_BOOT_DISK.data.sizeBytes;

describe('recovery environment options', () => {
  it('merges overlapping and touching ranges and drops empty ones', () => {
    assert.deepEqual(
      mergeRanges([
        { offset: 8192, length: 4096 },
        { offset: 0, length: 4096 },
        { offset: 4096, length: 100 },
        { offset: 9000, length: 10 },
        { offset: 50_000, length: 0 },
      ]),
      [
        { offset: 0, length: 4196 },
        { offset: 8192, length: 4096 },
      ],
    );
    assert.throws(() => mergeRanges([{ offset: -1, length: 1 }]), /range -1\+1 is not a byte offset/);
  });

  it('writes failback.conf only from words the script can take', () => {
    const options = {
      export: { address: '192.0.2.10', port: 10809, tlsHostname: 'primary.example', caPem: '' },
      identity: { machineId: 'm-1', stateDir: '/etc/haven' },
      disks: [
        { device: '/dev/sda', array: '/dev/md0', exportName: 'm-1.disk0', ranges: [] },
        { device: '/dev/sdb', array: '/dev/md1', exportName: 'm-1.disk1', ranges: [] },
      ],
    };
    assert.equal(
      failbackConfig({ ...options, network: { address: '192.0.2.20/24', gateway: '192.0.2.1' } }),
      [
        'export 192.0.2.10 10809 primary.example',
        'identity m-1 /etc/haven',
        'disk /dev/sda /dev/md0 m-1.disk0 /etc/haven/failback.0.ranges',
        'disk /dev/sdb /dev/md1 m-1.disk1 /etc/haven/failback.1.ranges',
        'network static 192.0.2.20/24 192.0.2.1',
        'then reboot',
        '',
      ].join('\n'),
    );
    const disk = options.disks[0]!;
    assert.throws(
      () => failbackConfig({ ...options, disks: [{ ...disk, device: '/dev/sda; reboot' }] }),
      /device .* is not a device path/,
    );
    assert.throws(
      () => failbackConfig({ ...options, export: { ...options.export, port: 0 } }),
      /export port 0 is not a TCP port/,
    );
    assert.throws(
      () =>
        failbackConfig({ ...options, export: { ...options.export, client: { certPem: '', keyPem: '' } } }),
      /either the server’s own identity .* or an embedded client certificate/,
    );
    assert.throws(() => failbackConfig({ ...options, disks: [] }), /1 to 16 disks, not 0/);
  });
});

/** The 64 KiB chunks in which two images differ, as ranges. */
async function differingChunks(a: string, b: string): Promise<ByteRange[]> {
  const [x, y] = [await readFile(a), await readFile(b)];
  assert.equal(x.length, y.length);
  const ranges: ByteRange[] = [];
  for (let offset = 0; offset < x.length; offset += CHUNK) {
    const end = Math.min(offset + CHUNK, x.length);
    if (!x.subarray(offset, end).equals(y.subarray(offset, end)))
      ranges.push({ offset, length: end - offset });
  }
  return mergeRanges(ranges);
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

function lastDurable(guest: GuestHandle): number {
  return Math.max(
    0,
    ...guest
      .lines()
      .map((l) => /^durable (\d+)$/.exec(l)?.[1])
      .filter((n) => n !== undefined)
      .map(Number),
  );
}

/** e2fsck -fn of one partition of a disk image, through a copy of its bytes. */
async function checkPartition(
  disk: string,
  partition: { offsetBytes: number; sizeBytes: number },
  into: string,
) {
  const file = await open(disk, 'r');
  try {
    const bytes = Buffer.alloc(partition.sizeBytes);
    await file.read(bytes, 0, bytes.length, partition.offsetBytes);
    await writeFile(into, bytes);
  } finally {
    await file.close();
  }
  return checkDataDisk(into);
}

describe('failback onto the server', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'haven-recovery-env-'));
  });
  after(() => rm(root, { recursive: true, force: true }));

  it('writes only the diverged data onto the server’s own disk; the server boots its own system with every record and resyncs its stale leg', async () => {
    const image = await buildGuestImage({ variant: 'server' });
    const bootDisk = await buildServerBootDisk(image);
    const [caKey, caCert, clientKey, clientCert] = ['ca.key', 'ca.pem', 'client.key', 'client.pem'].map((f) =>
      join(root, f),
    ) as [string, string, string, string];
    await selfSignedCertificate(caKey, caCert);
    await clientCertificate(caKey, caCert, clientKey, clientCert);
    const service = await DiskService.start({
      listen: { host: '127.0.0.1', port: 0 },
      tls: { key: await readFile(caKey), cert: await readFile(caCert), ca: await readFile(caCert) },
    });
    try {
      // The primary host's staging export: the server's remote leg.
      const leg = join(root, 'leg.img');
      const blank = await open(leg, 'w');
      await blank.truncate(SERVER_BOOT_DISK.sizeBytes);
      await blank.close();
      const { uris } = await service.attach('server1', {
        imagePath: leg,
        journalDir: join(root, 'leg.journal'),
      });
      const port = Number(new URL(uris.tcp!).port);
      const local = join(root, 'server.img');
      await copyServerBootDisk(bootDisk, local, {
        guest: { rate: 10, ip: GUEST_IP },
        cmdline: [`haven.nbd=10.0.2.2:${port}:server1`, 'haven.nbdtls=localhost'],
        files: {
          '/etc/haven/nbd-tls/ca.pem': await readFile(caCert),
          '/etc/haven/nbd-tls/cert.pem': await readFile(clientCert),
          '/etc/haven/nbd-tls/key.pem': await readFile(clientKey),
        },
      });

      // The server runs mirrored, then loses power under writes.
      const server = bootGuest({ bootFromDisk: true, disk: { file: local }, qemuArgs: NIC });
      try {
        await server.waitForLine(/^md: created raid1 metadata 1\.0 on \/dev\/vda and \/dev\/nbd0/, WAIT_MS);
        await server.waitForLine(/^md: synced$/, WAIT_MS);
        // md clears the bitmap's bits of the initial resync lazily (two rounds of its 5 s daemon):
        // a server that has run a while has only its writes in flight dirty.
        await delay(BITMAP_SETTLE_MS);
        await server.waitForLine(/^durable \d+$/, WAIT_MS, server.lines().length);
      } finally {
        server.kill();
        await server.exited;
      }
      const serverLast = lastDurable(server);
      await service.backend('server1').flush();
      // What Haven's replica holds of the server's disk when it stopped.
      const replicaAtStop = join(root, 'replica-at-stop.img');
      await copyFile(leg, replicaAtStop);

      // Failover: the replica boots as a VM and writes more records; then a
      // planned failback shuts it down (the final sync is the export below).
      const failedBack = join(root, 'failback.img');
      await copyFile(leg, failedBack);
      const vmQmp = join(root, 'vm-qmp.sock');
      const vm = bootGuest({ bootFromDisk: true, disk: { file: failedBack }, qmpSocket: vmQmp });
      let vmLast: number;
      try {
        const recovered = await vm.waitForLine(/^(recovered (\d+) ok|corrupt at .*)$/, WAIT_MS);
        assert.ok(Number(recovered[2]) >= serverLast - 1, `${recovered[0]}; the server had ${serverLast}`);
        await vm.waitForLine(new RegExp(`^durable ${Number(recovered[2]) + 40}$`), WAIT_MS);
        await powerDown(vm, vmQmp);
        vmLast = lastDurable(vm);
      } finally {
        vm.kill();
        await vm.exited;
      }

      // What the reverse replication wrote: here, what differs from the replica at the stop.
      const diverged = await differingChunks(replicaAtStop, failedBack);
      const divergedBytes = diverged.reduce((sum, r) => sum + r.length, 0);
      await service.attach('failback', { imagePath: failedBack, journalDir: join(root, 'failback.journal') });
      const envDir = join(root, 'recovery-environment');
      const builtAt = Date.now();
      const env = await buildRecoveryEnvironment(
        {
          export: {
            address: '10.0.2.2',
            port,
            tlsHostname: 'localhost',
            caPem: await readFile(caCert, 'utf8'),
            client: {
              certPem: await readFile(clientCert, 'utf8'),
              keyPem: await readFile(clientKey, 'utf8'),
            },
          },
          disks: [{ device: '/dev/vda', array: '/dev/md0', exportName: 'failback', ranges: diverged }],
        },
        envDir,
      );
      const buildMs = Date.now() - builtAt;

      // Network boot where QEMU has iPXE for virtio-net (slirp's TFTP stands
      // for the site's boot server); else the kernel loaded directly stands
      // for a boot medium.
      const networkBoot = await access(PXE_ROM).then(
        () => true,
        () => false,
      );
      const bootedAt = Date.now();
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
      let copied: number;
      let copyMs: number;
      let dirty: RegExpMatchArray;
      try {
        await recovery.waitForLine(/^failback: connected 10\.0\.2\.2:\d+\/failback over TLS$/, WAIT_MS);
        dirty = await recovery.waitForLine(
          /^failback: bitmap dirty (\d+) of (\d+) chunks of (\d+) bytes$/,
          WAIT_MS,
        );
        await recovery.waitForLine(/^failback: assembled \/dev\/md0 from \/dev\/vda alone/, WAIT_MS);
        await recovery.waitForLine(/^failback: copied \d+ of \d+$/, WAIT_MS);
        const done = await recovery.waitForLine(
          /^(failback: done (\d+) in (\d+) ms|failback: failed: .*)$/,
          WAIT_MS,
        );
        assert.ok(done[2], done[0]);
        [copied, copyMs] = [Number(done[2]), Number(done[3])];
        // It reboots; QEMU runs with -no-reboot, so that ends it.
        await recovery.exited;
      } finally {
        recovery.kill();
        await recovery.exited;
      }
      const recoveryMs = Date.now() - bootedAt;
      const [dirtyChunks, chunkBytes] = [Number(dirty[1]), Number(dirty[3])];
      console.log(
        [
          `failback: recovery environment ${env.image.cached ? 'cached' : 'built'}, written in ${buildMs} ms; ${networkBoot ? 'network boot (iPXE, TFTP)' : 'direct kernel boot (standing for a boot medium)'}`,
          `failback: ${(divergedBytes / MiB).toFixed(2)} MiB diverged in ${diverged.length} ranges, md bitmap ${dirtyChunks} dirty chunks of ${chunkBytes / 1024} KiB; copied ${(copied / MiB).toFixed(2)} MiB in ${copyMs} ms, boot to power-off ${recoveryMs} ms, of a ${SERVER_BOOT_DISK.sizeBytes / MiB} MiB disk`,
        ].join('\n'),
      );
      // The diverged data and the chunks in flight at the power loss, clipped to md's data: not the disk.
      const divergedInArray = diverged
        .filter((r) => r.offset < PARTITIONS_END)
        .reduce((sum, r) => sum + Math.min(r.length, PARTITIONS_END - r.offset), 0);
      assert.ok(copied >= divergedInArray, `copied ${copied} of ${divergedInArray} diverged bytes`);
      assert.ok(copied <= divergedBytes + dirtyChunks * chunkBytes, `copied ${copied}`);
      assert.ok(copied < SERVER_BOOT_DISK.sizeBytes / 4, `copied ${copied}, not the disk`);

      // The server boots its own system: every record the VM wrote, the stale leg re-added and resynced.
      const qmpSocket = join(root, 'server-qmp.sock');
      const again = bootGuest({ bootFromDisk: true, disk: { file: local }, qmpSocket, qemuArgs: NIC });
      try {
        await again.waitForLine(/^md: assembled \/dev\/md0 from \/dev\/vda \/dev\/nbd0$/, WAIT_MS);
        // The stale leg comes back through the bitmap: what the failback wrote and what was in flight.
        const resent = await again.waitForLine(/^md: bitmap dirty (\d+) of (\d+) chunks/, WAIT_MS);
        await again.waitForLine(/^md: re-added \/dev\/nbd0$/, WAIT_MS);
        assert.ok(
          Number(resent[1]) <= Math.ceil(copied / chunkBytes) + dirtyChunks + diverged.length,
          `${resent[0]} after copying ${copied} bytes`,
        );
        const recovered = await again.waitForLine(/^(recovered (\d+) ok|corrupt at .*)$/, WAIT_MS);
        assert.ok(Number(recovered[2]) >= vmLast, `${recovered[0]}; the VM made ${vmLast} durable`);
        await again.waitForLine(/^md: synced$/, WAIT_MS);
        await again.waitForLine(/^md: active raid1 \[UU\]$/, WAIT_MS);
        await again.waitForLine(new RegExp(`^durable ${Number(recovered[2]) + 5}$`), WAIT_MS);
        await powerDown(again, qmpSocket);
        console.log(
          `failback: the server's own boot: ${again
            .lines()
            .filter((l) => /^(md|nbd|recovered): /.test(l) || /^recovered /.test(l))
            .join('; ')}`,
        );
      } finally {
        again.kill();
        await again.exited;
      }
      await service.backend('server1').flush();
      const [mine, theirs] = [await readFile(local), await readFile(leg)];
      assert.ok(
        mine.subarray(0, PARTITIONS_END).equals(theirs.subarray(0, PARTITIONS_END)),
        'the remote leg holds what the server’s disk holds',
      );
      for (const [name, partition] of [
        ['system', SERVER_BOOT_DISK.system],
        ['data', SERVER_BOOT_DISK.data],
      ] as const) {
        const check = await checkPartition(local, partition, join(root, `${name}.img`));
        assert.equal(check.clean, true, `${name}: ${check.output}`);
      }
    } finally {
      await service.close();
    }
  });
});
