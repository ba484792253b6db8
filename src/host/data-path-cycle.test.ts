/**
 * The data path of failover → commit → reprotect → failback → reprotect
 * forward, between two real data paths (two data directories, TLS
 * replication between them): what each step sends and what each side holds.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { Region } from '../disk/index.ts';
import type { BlockBackend } from '../nbd/block-backend.ts';
import { formatRecoveryPointRef, mergeRegions, regionBytes } from '../replica/index.ts';
import { startTestSite, type TestSite } from '../testing/data-path-site.ts';
import { waitFor } from '../testing/replication-test-fixture.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import type { ReplicationStatus } from './host-services.ts';

const MiB = 1 << 20;
const SIZE = 32 * MiB;
const diskId = 'd0';
const run = promisify(execFile);

/** Random 4 KiB-aligned writes through a backend, mirrored in `model`; returns the regions written. */
async function writeRandom(
  backend: BlockBackend,
  model: Buffer,
  rnd: SeededRandom,
  count: number,
  maxBlocks = 8,
): Promise<Region[]> {
  const regions: Region[] = [];
  for (let i = 0; i < count; i++) {
    const length = rnd.int(1, maxBlocks) * 4096;
    const offset = rnd.int(0, (SIZE - length) / 4096) * 4096;
    const data = rnd.bytes(length);
    data.copy(model, offset);
    await backend.write(offset, data, { fua: false });
    regions.push({ offset, length });
  }
  await backend.flush();
  return mergeRegions(regions);
}

async function readAll(read: (offset: number, length: number) => Promise<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0; at < SIZE; at += 4 * MiB) parts.push(await read(at, Math.min(4 * MiB, SIZE - at)));
  return Buffer.concat(parts);
}

function assertSame(actual: Buffer, expected: Buffer, what: string): void {
  if (actual.equals(expected)) return;
  let at = 0;
  while (actual[at] === expected[at]) at++;
  assert.fail(`${what}: first difference at byte ${at} (of ${expected.length})`);
}

async function settled(
  site: TestSite,
  machineId: string,
  done: (s: ReplicationStatus) => boolean,
  what: string,
): Promise<ReplicationStatus> {
  let last: ReplicationStatus | null = null;
  await waitFor(
    what,
    async () => {
      last = await site.path.services.replication.status({ machineId });
      return done(last);
    },
    30_000,
    () => JSON.stringify(last),
  );
  return last as unknown as ReplicationStatus;
}

let primary: TestSite;
let recovery: TestSite;

before(async () => {
  [primary, recovery] = await Promise.all([startTestSite('primary'), startTestSite('recovery')]);
  await primary.path.services.replication.allowSender({ fingerprint: recovery.target.fingerprint });
  await recovery.path.services.replication.allowSender({ fingerprint: primary.target.fingerprint });
});

after(async () => {
  for (const site of [primary, recovery]) {
    await site?.path.close();
    if (site) await rm(site.dir, { recursive: true, force: true });
  }
});

/**
 * Protects a machine, fails it over at a point P with writes on both sides
 * (on the primary after P, replicated and not; on the recovery view) and
 * commits. Returns the models and what each side knows.
 */
async function failoverScenario(seed: number, machineId: string, viewId: string) {
  const diskKey = `${machineId}/${diskId}`;
  const rnd = new SeededRandom(seed);
  const imagePath = join(primary.dir, `image-${viewId}.img`);
  const disk = primary.path.services.disk;
  await disk.attach({ machineId, diskId, source: imagePath, sizeBytes: SIZE });
  const exportName = `${machineId}.${diskId}`;
  const source = primary.path.diskService.backend(exportName);
  // A disk full of data: regions the failover reverts hold data too, not zeroes sent as holes.
  const model = rnd.bytes(SIZE);
  for (let at = 0; at < SIZE; at += 4 * MiB) {
    await source.write(at, model.subarray(at, at + 4 * MiB), { fua: false });
  }
  await source.flush();
  const replication = primary.path.services.replication;
  await replication.start({ machineId, diskIds: [diskId], target: recovery.target, mode: 'full' });
  const replicated = () =>
    recovery.path.replicaStore.listDisks().some((d) => d.diskKey === diskKey) &&
    recovery.path.replicaStore.diskStatus(diskKey).durableSeq >= source.journal.status.writtenSeq;
  await settled(
    primary,
    machineId,
    (s) => s.state === 'streaming' && s.progress === 100 && replicated(),
    'initial copy',
  );
  await writeRandom(source, model, rnd, 20);
  const seqP = source.journal.status.nextSeq - 1;
  const modelP = Buffer.from(model);
  await settled(primary, machineId, (s) => s.state === 'streaming' && replicated(), 'replication through P');
  // Written on the primary after P and replicated: the replica holds them, commit drops them.
  const afterP = await writeRandom(source, model, rnd, 15);
  await settled(primary, machineId, (s) => s.state === 'streaming' && replicated(), 'replication after P');
  await replication.stop({ machineId });
  // Written after replication stopped (the outage): only the primary's journal knows.
  const unsent = await writeRandom(source, model, rnd, 10);

  const pointId = formatRecoveryPointRef({ kind: 'disk', diskKey, seq: seqP });
  const replica = recovery.path.services.replica;
  assert.ok(
    (await replica.listPoints({ machineId })).some((p) => p.id === pointId),
    'P is a recovery point',
  );
  const view = await replica.openView({ machineId, pointId, writable: true, viewId, failover: true });
  const again = await replica.openView({ machineId, pointId, writable: true, viewId, failover: true });
  assert.equal(again.disks[0]?.nbdUri, view.disks[0]?.nbdUri, 'opening the same view twice returns it');
  assert.equal(view.disks[0]?.status?.divergedBytes, regionBytes(afterP), 'diverged = written after P');
  const viewDisk = recovery.path.viewBackend(viewId, diskId);
  assertSame(await readAll((o, n) => viewDisk.read(o, n)), modelP, 'failover view at P');

  const viewModel = Buffer.from(modelP);
  const overlayWrites = await writeRandom(viewDisk, viewModel, rnd, 12);
  await replica.commitPoint({ machineId, pointId });
  await replica.commitPoint({ machineId, pointId });
  assertSame(await readAll((o, n) => viewDisk.read(o, n)), viewModel, 'view after commit');
  assert.equal(
    recovery.path.replicaStore.diskStatus(diskKey).sealed,
    true,
    'the committed replica is sealed',
  );

  // Reprotect to the original machine: its image becomes the reverse replica's base (no copy).
  const adopt = { machineId, diskId, imagePath, sizeBytes: SIZE };
  const adopted = await primary.path.services.replica.adoptImage(adopt);
  const adoptedAgain = await primary.path.services.replica.adoptImage(adopt);
  assert.deepEqual(adoptedAgain, adopted, 'adopting twice is harmless');
  assert.ok(adopted.unsentRegions !== null);
  for (const r of unsent) {
    assert.ok(
      adopted.unsentRegions.some((u) => u.offset <= r.offset && r.offset + r.length <= u.offset + u.length),
      `unsent region ${r.offset}+${r.length} is known`,
    );
  }
  return { rnd, imagePath, viewDisk, viewModel, model, afterP, unsent, overlayWrites, adopted, pointId };
}

test('failover, commit, delta reprotect, complete failover, commit after failback, reprotect forward', async () => {
  const machineId = 'vm1';
  const diskKey = `${machineId}/${diskId}`;
  const s = await failoverScenario(1, machineId, 'fo1');
  const { viewDisk, viewModel, rnd } = s;
  const reverse = recovery.path.services.replication;
  const start = {
    machineId,
    diskIds: [diskId],
    target: primary.target,
    mode: 'delta' as const,
    source: { viewId: 'fo1', extraRegions: { [diskId]: s.adopted.unsentRegions ?? [] } },
  };
  await reverse.start(start);
  await reverse.start(start);
  // The recovery machine keeps writing while reprotect runs.
  const during = await writeRandom(viewDisk, viewModel, rnd, 10);
  const reverseReplica = () => primary.path.replicaStore.diskStatus(diskKey);
  const viewJournal = async () => {
    const journal = (await recovery.path.services.replica.viewInfo({ viewId: 'fo1' })).disks[0]?.status
      ?.journal;
    assert.ok(journal !== undefined);
    return journal;
  };
  const caughtUp = async () => reverseReplica().durableSeq >= (await viewJournal()).nextSeq - 1;
  await settled(
    recovery,
    machineId,
    (st) => st.state === 'streaming' && st.queuedBytes === 0 && reverseReplica().syncing === null,
    'delta reprotect',
  );
  // A flush after the sync: the reverse replica's first recovery point.
  await viewDisk.flush();
  await waitFor('reverse catch-up', caughtUp);
  const status = await recovery.path.services.replication.status({ machineId });
  assertSame(
    await readAll((o, n) => primary.path.replicaStore.read(diskKey, o, n)),
    viewModel,
    'reverse replica = recovery view',
  );
  const owed =
    regionBytes(s.afterP) +
    (s.adopted.unsentBytes ?? 0) +
    regionBytes(s.overlayWrites) +
    regionBytes(during) +
    4096;
  console.log(
    `delta reprotect: ${status.sentBytes} bytes sent for ${owed} bytes diverged or written, disk ${SIZE} bytes`,
  );
  assert.ok(status.sentBytes <= owed * 1.2 + 64 * 1024, `sent ${status.sentBytes} for ${owed} owed`);
  assert.ok(status.sentBytes < SIZE / 8);

  // The reverse replica's latest point, served over NBD, equals the recovery view (qemu-img compare).
  const points = await primary.path.services.replica.listPoints({ machineId });
  const latest = points.at(-1);
  assert.ok(latest !== undefined, 'the reverse replica has a point after its first sync');
  const check = await primary.path.services.replica.openView({
    machineId,
    pointId: latest.id,
    writable: false,
  });
  const viewUri = (await recovery.path.services.replica.viewInfo({ viewId: 'fo1' })).disks[0]?.nbdUri ?? '';
  await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', check.disks[0]?.nbdUri ?? '', viewUri]);
  await primary.path.services.replica.closeView({ viewId: check.viewId, discardWrites: false });

  // Failback, synchronise before failover: the recovery machine stops, the stream drains, complete failover.
  await viewDisk.flush();
  await settled(recovery, machineId, (st) => st.queuedBytes === 0 && st.state === 'streaming', 'drain');
  await waitFor('last records', caughtUp);
  await reverse.stop({ machineId });
  const imagePath = s.imagePath;
  await primary.path.services.replica.consolidate({ machineId, restore: [{ diskId, imagePath }] });
  await primary.path.services.replica.consolidate({ machineId, restore: [{ diskId, imagePath }] });
  assertSame(await readFile(imagePath), viewModel, 'original image = recovery view at shutdown');
  const attach = { machineId, diskId, source: imagePath, sizeBytes: SIZE, resetJournal: true };
  await primary.path.services.disk.attach(attach);
  await primary.path.services.disk.attach(attach);
  const source = primary.path.diskService.backend(`${machineId}.${diskId}`);
  assert.equal(source.journal.status.nextSeq, 1, 'the primary journal starts again');

  // Commit after failback: the recovery replica becomes the view's contents and follows the new journal.
  const replica = recovery.path.services.replica;
  await replica.consolidateView({ machineId, viewId: 'fo1' });
  await replica.consolidateView({ machineId, viewId: 'fo1' });
  assert.equal(recovery.path.replicaStore.diskStatus(diskKey).durableSeq, 0);
  assert.equal(recovery.path.replicaStore.diskStatus(diskKey).sealed, false);

  // Reprotect forward: only what the primary wrote since it started again is sent.
  const forward = primary.path.services.replication;
  await forward.start({ machineId, diskIds: [diskId], target: recovery.target, mode: 'continue' });
  const primaryModel = Buffer.from(viewModel);
  const fresh = await writeRandom(source, primaryModel, rnd, 10);
  const fwd = await settled(
    primary,
    machineId,
    (st) =>
      st.state === 'streaming' &&
      recovery.path.replicaStore.diskStatus(diskKey).durableSeq >= source.journal.status.writtenSeq,
    'forward continue',
  );
  assertSame(
    await readAll((o, n) => recovery.path.replicaStore.read(diskKey, o, n)),
    primaryModel,
    'recovery replica = primary',
  );
  assert.ok(fwd.sentBytes <= regionBytes(fresh) * 1.2 + 64 * 1024, `forward sent ${fwd.sentBytes}`);
  const newest = (await replica.listPoints({ machineId })).at(-1);
  assert.ok(newest !== undefined);
  const drill = await replica.openView({ machineId, pointId: newest.id, writable: false });
  assertSame(
    await readAll((o, n) => recovery.path.viewBackend(drill.viewId, diskId).read(o, n)),
    primaryModel,
    'latest point after reprotect forward',
  );
  await replica.closeView({ viewId: drill.viewId, discardWrites: false });
  await forward.stop({ machineId });
});

test('full download: a hash compare sends only the blocks that differ', async () => {
  const machineId = 'vm2';
  const diskKey = `${machineId}/${diskId}`;
  const s = await failoverScenario(2, machineId, 'fo2');
  await recovery.path.services.replication.start({
    machineId,
    diskIds: [diskId],
    target: primary.target,
    mode: 'full',
    source: { viewId: 'fo2' },
  });
  const reverse = () => primary.path.replicaStore.diskStatus(diskKey);
  const status = await settled(
    recovery,
    machineId,
    (st) =>
      st.state === 'streaming' &&
      st.queuedBytes === 0 &&
      st.syncs?.[0]?.completed === true &&
      reverse().syncing === null,
    'hash resync',
  );
  const sync = status.syncs?.[0];
  assert.equal(sync?.kind, 'hash');
  // Blocks (64 KiB) any side wrote since P: the only ones that can differ.
  const block = 64 << 10;
  const touched = new Set<number>();
  for (const r of [...s.afterP, ...s.unsent, ...s.overlayWrites]) {
    for (let b = Math.floor(r.offset / block); b * block < r.offset + r.length; b++) touched.add(b);
  }
  assert.ok((sync?.blocksDiffering ?? 0) > 0);
  assert.ok((sync?.blocksDiffering ?? Number.POSITIVE_INFINITY) <= touched.size);
  assert.equal(sync?.blocksCompared, SIZE / block);
  console.log(
    `full download: ${sync?.blocksDiffering} of ${sync?.blocksCompared} blocks differed, ${status.sentBytes} bytes sent, disk ${SIZE} bytes`,
  );
  assert.ok(status.sentBytes <= touched.size * block * 1.1 + 64 * 1024, `sent ${status.sentBytes}`);
  assertSame(
    await readAll((o, n) => primary.path.replicaStore.read(diskKey, o, n)),
    s.viewModel,
    'reverse replica = recovery view',
  );
  await recovery.path.services.replication.stop({ machineId });
});
