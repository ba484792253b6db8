import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { JournalRecord } from '../disk/index.ts';
import { HavenError } from '../errors/index.ts';
import { parseNbdUri } from '../hypervisor/index.ts';
import { NbdClient } from '../nbd/index.ts';
import { ReplicaStore } from '../replica/index.ts';
import { damageInodeTable } from '../testing/damage-inode-table.ts';
import { LINUX_FILESYSTEM_GUID, LINUX_SWAP_GUID, writeGpt, writeMbr } from '../testing/partitioned-disk.ts';
import { until } from '../testing/until.ts';
import type { FilesystemCheck } from './host-services.ts';
import { HostStateFile } from './host-state-file.ts';
import { notAvailableServices } from './not-available-services.ts';
import { ReplicaService } from './replica-service.ts';
import { filesystemCheckDirOf, sweepFilesystemChecks } from './view-filesystem-check.ts';
import { ViewRegistry } from './view-registry.ts';

const run = promisify(execFile);
const MiB = 1 << 20;
const SIZE = 32 * MiB;
const CHUNK = 64 * 1024;
let dir: string;
let store: ReplicaStore;
let views: ViewRegistry;
let replica: ReplicaService;
let workDir: string;

/** An ext4 filesystem of `size` bytes made by mkfs.ext4; `prepare` may change the image file first. */
async function ext4(size: number, label: string, prepare?: (path: string) => Promise<void>): Promise<Buffer> {
  const path = join(dir, `${label}.img`);
  await writeFile(path, Buffer.alloc(0));
  await run('truncate', ['-s', String(size), path]);
  await run('mkfs.ext4', ['-q', '-F', '-L', label, '-E', 'lazy_itable_init=0,lazy_journal_init=0', path]);
  await prepare?.(path);
  const bytes = await readFile(path);
  await rm(path);
  return bytes;
}

/** A replica of one disk per image, whose latest (app-consistent) point is those images: returns the point. */
async function replicate(machineId: string, disks: Record<string, Buffer>): Promise<string> {
  for (const [diskId, image] of Object.entries(disks)) {
    const diskKey = `${machineId}/${diskId}`;
    await store.ensureDisk(diskKey, image.length);
    let seq = (await store.durableSequence(diskKey)) + 1;
    const records: JournalRecord[] = [];
    for (let offset = 0; offset < image.length; offset += CHUNK) {
      const data = image.subarray(offset, offset + CHUNK);
      if (data.every((b) => b === 0)) continue;
      records.push({ seq: seq++, timeMs: 1_000, kind: 'write', offset, length: data.length, data });
    }
    records.push({ seq: seq++, timeMs: 2_000, kind: 'flush', offset: 0, length: 0 });
    // One marker on every disk: what makes a point of a machine with several.
    const marker = { type: 'app-consistent', id: `${machineId}-m`, label: `${machineId}-m` } as const;
    records.push({ seq: seq++, timeMs: 2_000, kind: 'marker', offset: 0, length: 0, marker });
    await store.append(diskKey, records);
  }
  const point = (await replica.listPoints({ machineId })).at(-1);
  assert.ok(point, `machine ${machineId} has a point`);
  return point.id;
}

async function writableView(machineId: string, pointId: string, viewId: string) {
  return replica.openView({ machineId, pointId, writable: true, viewId });
}

/** Mounts and processes of the checker left on this host. */
async function leftovers(): Promise<string[]> {
  const mounts = (await readFile('/proc/self/mounts', 'utf8'))
    .split('\n')
    .filter((line) => line.includes(workDir))
    .map((line) => `mount ${line}`);
  const processes: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(workDir)) processes.push(`process ${pid} ${cmdline.replaceAll('\0', ' ')}`);
  }
  return [...mounts, ...processes];
}

const brief = (f: FilesystemCheck) => ({
  disk: f.location.diskId,
  partition: f.location.partition ? `${f.location.partition.table}${f.location.partition.number}` : null,
  offset: f.location.offsetBytes,
  type: f.type,
  result: f.result,
});

const xfsprogs =
  spawnSync('sh', ['-c', 'command -v mkfs.xfs && command -v xfs_repair'], { stdio: 'ignore' }).status === 0;

/**
 * Makes the filesystem image at `path` crash-consistent: mounted, written
 * and synced, then copied while still mounted, so its journal (ext) or log
 * (XFS) holds changes, as a point cut under a running guest.
 */
async function crashWhileMounted(path: string): Promise<void> {
  const mount = `${path}.mnt`;
  await mkdir(mount);
  await run('mount', ['-o', 'loop', path, mount]);
  try {
    await writeFile(join(mount, 'records.txt'), 'a guest record\n'.repeat(1000));
    await run('sync');
    await run('cp', ['--sparse=always', path, `${path}.crashed`]);
  } finally {
    await run('umount', [mount]);
    await rm(mount, { recursive: true });
  }
  await run('mv', [`${path}.crashed`, path]);
}

async function dirtyXfs(): Promise<Buffer> {
  const path = join(dir, 'xfs.img');
  // mkfs.xfs makes nothing smaller than 300 MiB.
  await run('truncate', ['-s', String(320 * MiB), path]);
  await run('mkfs.xfs', ['-q', '-L', 'xdata', path]);
  await crashWhileMounted(path);
  const bytes = await readFile(path);
  await rm(path);
  return bytes;
}

const code = (wanted: string) => (e: unknown) => e instanceof HavenError && e.code === wanted;

let clean: string;
let parted: string;
let dirty: string;
let dirtyParted: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-fscheck-'));
  workDir = filesystemCheckDirOf(dir);
  store = await ReplicaStore.open(join(dir, 'replica'), { now: () => 2_000 });
  views = await ViewRegistry.listen(store, join(dir, 'views.sock'));
  replica = new ReplicaService({
    dataDir: dir,
    replicaStore: store,
    views,
    replication: { isSending: () => false, sendsMachine: () => false, refuseIfSendingView: () => {} },
    diskService: {
      list: () => [],
      backend: (name) => {
        throw new HavenError('not_found', `no export '${name}'`);
      },
    },
    disks: notAvailableServices().disk,
    state: await HostStateFile.load(join(dir, 'data-path.json')),
  });

  clean = await replicate('clean', { d0: await ext4(SIZE, 'root') });

  // MBR: ext4, an LVM2 physical volume, a LUKS volume. GPT: ext4 and swap.
  const mbr = Buffer.alloc(SIZE);
  writeMbr(mbr, [
    { firstSector: 2048, sectors: 20 * 2048, type: 0x83 },
    { firstSector: 21 * 2048, sectors: 2 * 2048, type: 0x8e },
    { firstSector: 23 * 2048, sectors: 2 * 2048, type: 0x83 },
  ]);
  (await ext4(20 * MiB, 'mbr-root')).copy(mbr, MiB);
  mbr.write('LABELONE', 21 * MiB + 512, 'latin1');
  mbr.writeUInt32LE(32, 21 * MiB + 512 + 20);
  mbr.write('LVM2 001', 21 * MiB + 512 + 24, 'latin1');
  Buffer.from('LUKS\xba\xbe', 'latin1').copy(mbr, 23 * MiB);
  const gpt = Buffer.alloc(SIZE);
  writeGpt(gpt, [
    { firstSector: 2048, lastSector: 21 * 2048 - 1, typeGuid: LINUX_FILESYSTEM_GUID },
    { firstSector: 21 * 2048, lastSector: 25 * 2048 - 1, typeGuid: LINUX_SWAP_GUID },
  ]);
  (await ext4(20 * MiB, 'gpt-root')).copy(gpt, MiB);
  const swap = join(dir, 'swap.img');
  await run('truncate', ['-s', String(4 * MiB), swap]);
  await run('mkswap', [swap]);
  (await readFile(swap)).copy(gpt, 21 * MiB);
  parted = await replicate('parted', { d0: mbr, d1: gpt });

  // A crash-consistent point whose journal needs recovery.
  dirty = await replicate('dirty', { d0: await ext4(SIZE, 'dirty', crashWhileMounted) });
  // The same inside a partition (as on a physical server's disk): e2fsck reaches it at an offset.
  const partedDirty = Buffer.alloc(SIZE);
  writeMbr(partedDirty, [{ firstSector: 2048, sectors: 20 * 2048, type: 0x83 }]);
  (await ext4(20 * MiB, 'part-dirty', crashWhileMounted)).copy(partedDirty, MiB);
  dirtyParted = await replicate('dirty-parted', { d0: partedDirty });
});

after(async () => {
  await views.closeAll();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('replica.checkFilesystems', () => {
  it('passes a clean whole-disk ext4, with e2fsck’s output as evidence, and leaves nothing behind', async () => {
    await writableView('clean', clean, 'clean-1');
    const report = await replica.checkFilesystems({ viewId: 'clean-1' });
    assert.equal(report.timedOut, false);
    assert.equal(report.pointId, clean);
    assert.equal(report.filesystems.length, 1);
    const [fs] = report.filesystems;
    assert.deepEqual(brief(fs!), { disk: 'd0', partition: null, offset: 0, type: 'ext4', result: 'passed' });
    assert.equal(fs!.label, 'root');
    assert.equal(fs!.reason, null);
    assert.equal(fs!.journalReplayed, false);
    assert.match(fs!.evidence, /Pass 5: Checking group summary information/);
    assert.deepEqual(await leftovers(), []);
    await replica.closeView({ viewId: 'clean-1', discardWrites: true });
  });

  it('finds the filesystems of MBR and GPT disks; LVM, LUKS and swap are not checked, with the reason', async () => {
    await writableView('parted', parted, 'parted-1');
    const report = await replica.checkFilesystems({ viewId: 'parted-1' });
    assert.deepEqual(report.filesystems.map(brief), [
      { disk: 'd0', partition: 'mbr1', offset: MiB, type: 'ext4', result: 'passed' },
      { disk: 'd0', partition: 'mbr2', offset: 21 * MiB, type: 'lvm2-member', result: 'not-checked' },
      { disk: 'd0', partition: 'mbr3', offset: 23 * MiB, type: 'luks', result: 'not-checked' },
      { disk: 'd1', partition: 'gpt1', offset: MiB, type: 'ext4', result: 'passed' },
      { disk: 'd1', partition: 'gpt2', offset: 21 * MiB, type: 'swap', result: 'not-checked' },
    ]);
    const reasons = report.filesystems.map((f) => f.reason ?? '');
    assert.match(reasons[1]!, /LVM2 physical volume/);
    assert.match(reasons[2]!, /LUKS/);
    assert.match(reasons[4]!, /swap/);
    assert.equal(report.filesystems[0]!.label, 'mbr-root');
    assert.equal(report.filesystems[3]!.location.sizeBytes, 20 * MiB);
    assert.deepEqual(await leftovers(), []);
    await replica.closeView({ viewId: 'parted-1', discardWrites: true });
  });

  it('with vmBoot, reads the first disk as a VM would boot it and says what to fix (here: no boot code)', async () => {
    await writableView('parted', parted, 'parted-boot');
    const report = await replica.checkFilesystems({ viewId: 'parted-boot', vmBoot: true });
    assert.equal(report.vmBoot?.bootable, false);
    const bootLoader = report.vmBoot?.results.find((r) => r.item === 'boot-loader');
    assert.equal(bootLoader?.status, 'failed', JSON.stringify(report.vmBoot));
    assert.ok(bootLoader?.fix, 'a failed item says what to fix');
    assert.equal(report.filesystems.length, 5, 'the filesystems are checked as well');
    const plain = await replica.checkFilesystems({ viewId: 'parted-boot' });
    assert.equal(plain.vmBoot, undefined, 'not asked, not read');
    assert.deepEqual(await leftovers(), []);
    await replica.closeView({ viewId: 'parted-boot', discardWrites: true });
  });

  it('replays the journal of a crash-consistent point into the overlay, not the replica, then passes it', async () => {
    const view = await writableView('dirty', dirty, 'dirty-1');
    const report = await replica.checkFilesystems({ viewId: 'dirty-1' });
    const [fs] = report.filesystems;
    assert.equal(fs!.result, 'passed', fs!.evidence);
    assert.equal(fs!.journalReplayed, true);
    assert.equal(await needsRecovery(view.disks[0]!.nbdUri), false, 'the overlay holds the replayed journal');
    await replica.closeView({ viewId: 'dirty-1', discardWrites: true });
    const fresh = await writableView('dirty', dirty, 'dirty-2');
    assert.equal(await needsRecovery(fresh.disks[0]!.nbdUri), true, 'the replica still needs recovery');
    await replica.closeView({ viewId: 'dirty-2', discardWrites: true });
  });

  it('replays the journal of a crashed filesystem inside a partition too (e2fsck loses the offset when it re-opens)', async () => {
    await writableView('dirty-parted', dirtyParted, 'dirty-parted-1');
    const report = await replica.checkFilesystems({ viewId: 'dirty-parted-1' });
    const [fs] = report.filesystems;
    assert.equal(fs!.location.offsetBytes, MiB);
    assert.equal(fs!.result, 'passed', fs!.evidence);
    assert.equal(fs!.journalReplayed, true);
    assert.deepEqual(await leftovers(), []);
    await replica.closeView({ viewId: 'dirty-parted-1', discardWrites: true });
  });

  it('fails a filesystem whose inode table was overwritten in the overlay, with e2fsck’s evidence; the replica is unchanged', async () => {
    const view = await writableView('clean', clean, 'damaged');
    const damage = await damageInodeTable(view.disks[0]!.nbdUri);
    assert.ok(damage.length > 0);
    const report = await replica.checkFilesystems({ viewId: 'damaged' });
    const [fs] = report.filesystems;
    assert.equal(fs!.result, 'failed');
    assert.match(fs!.reason!, /^e2fsck -fn: errors left uncorrected.*\(exit code (4|12)\)$/);
    assert.match(fs!.evidence, /inode/i);
    assert.match(fs!.evidence, /Filesystem still has errors/);
    assert.deepEqual(await leftovers(), []);
    await replica.closeView({ viewId: 'damaged', discardWrites: true });
    await writableView('clean', clean, 'after-damage');
    const again = await replica.checkFilesystems({ viewId: 'after-damage' });
    assert.equal(again.filesystems[0]!.result, 'passed', 'the damage stayed in the dropped overlay');
    await replica.closeView({ viewId: 'after-damage', discardWrites: true });
  });

  it('replays the log of a crash-consistent XFS into the overlay, then passes it with xfs_repair -n', {
    skip: xfsprogs ? false : 'xfsprogs is not installed',
  }, async () => {
    const point = await replicate('xfs', { d0: await dirtyXfs() });
    await writableView('xfs', point, 'xfs-1');
    const report = await replica.checkFilesystems({ viewId: 'xfs-1' });
    const [fs] = report.filesystems;
    assert.deepEqual(brief(fs!), { disk: 'd0', partition: null, offset: 0, type: 'xfs', result: 'passed' });
    assert.equal(fs!.label, 'xdata');
    assert.equal(fs!.journalReplayed, true, fs!.evidence);
    assert.match(fs!.evidence, /Phase 7|No modify flag set/);
    assert.deepEqual(await leftovers(), []);
    assert.doesNotMatch((await run('losetup', ['-a'])).stdout, new RegExp(workDir));
    await replica.closeView({ viewId: 'xfs-1', discardWrites: true });
  });

  it('at the time limit, what was not finished is not checked, never passed, and nothing stays mounted', async () => {
    await writableView('parted', parted, 'hurried');
    const report = await replica.checkFilesystems({ viewId: 'hurried', timeoutMs: 1 });
    assert.equal(report.timedOut, true);
    assert.equal(report.filesystems.length, 5);
    for (const fs of report.filesystems) {
      assert.equal(fs.result, 'not-checked');
      assert.ok(fs.reason, 'each says why');
    }
    assert.match(report.filesystems[0]!.reason!, /time limit of 1 ms/);
    assert.deepEqual(await leftovers(), []);
    await replica.closeView({ viewId: 'hurried', discardWrites: true });
  });

  it('is refused on read-only and unknown views, for a bad time limit, and twice at once', async () => {
    await replica.openView({ machineId: 'clean', pointId: clean, writable: false, viewId: 'ro' });
    await assert.rejects(replica.checkFilesystems({ viewId: 'ro' }), code('operation_not_allowed'));
    await replica.closeView({ viewId: 'ro', discardWrites: false });
    await assert.rejects(replica.checkFilesystems({ viewId: 'nope' }), code('not_found'));
    await writableView('clean', clean, 'twice');
    for (const timeoutMs of [0, -5, 1.5, Number.NaN]) {
      await assert.rejects(
        replica.checkFilesystems({ viewId: 'twice', timeoutMs }),
        code('validation_failed'),
      );
    }
    const first = replica.checkFilesystems({ viewId: 'twice' });
    await assert.rejects(replica.checkFilesystems({ viewId: 'twice' }), code('conflict'));
    assert.equal((await first).filesystems[0]!.result, 'passed');
    await replica.closeView({ viewId: 'twice', discardWrites: true });
  });

  it("sweeps the mount and nbdfuse a crashed agent's check left", async () => {
    const view = await writableView('clean', clean, 'crashed');
    const mount = join(workDir, 'crashed.d0');
    await mkdir(mount, { recursive: true });
    const fuse = spawn('nbdfuse', ['-P', `${mount}.pid`, mount, view.disks[0]!.nbdUri], {
      stdio: 'ignore',
      detached: true,
    });
    fuse.unref();
    await until('nbdfuse to mount', () =>
      stat(`${mount}.pid`).then(
        () => true,
        () => false,
      ),
    );
    assert.notDeepEqual(await leftovers(), []);
    await sweepFilesystemChecks(workDir);
    await until('the sweep to finish', async () => (await leftovers()).length === 0, { timeoutMs: 10_000 });
    assert.equal(await stat(workDir).catch(() => null), null);
    await replica.closeView({ viewId: 'crashed', discardWrites: true });
  });
});

/** Whether the ext superblock at the start of the export says its journal needs recovery. */
async function needsRecovery(nbdUri: string): Promise<boolean> {
  const target = parseNbdUri(nbdUri);
  assert.equal(target.server.type, 'unix');
  const client = await NbdClient.connect(
    { path: (target.server as { path: string }).path },
    { exportName: target.export },
  );
  try {
    const sb = await client.read(1024, 1024);
    return (sb.readUInt32LE(96) & 0x4) !== 0;
  } finally {
    await client.disconnect();
  }
}
