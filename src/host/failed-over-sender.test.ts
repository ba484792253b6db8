/**
 * A source that comes back after its machine failed over, between two real
 * data paths (TLS replication): its sender, still running or resumed from
 * its state file by a restarted agent before the vault has spoken to it,
 * gets nothing into the replica. The receiver refuses, naming the disk of
 * the machine and why; the source's journal keeps what it wrote.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { formatRecoveryPointRef } from '../replica/index.ts';
import { startTestSite, type TestSite } from '../testing/data-path-site.ts';
import { waitFor } from '../testing/replication-test-fixture.ts';
import { type DataPath, startDataPath } from './data-path.ts';
import type { ReplicationStatus } from './host-services.ts';

const MiB = 1 << 20;
const SIZE = 8 * MiB;
const machineId = 'm-failed-over';
const diskId = 'd0';
const diskKey = `${machineId}/${diskId}`;

let primary: TestSite;
let recovery: TestSite;
let restarted: DataPath | undefined;

before(async () => {
  [primary, recovery] = await Promise.all([startTestSite('primary'), startTestSite('recovery')]);
  await recovery.path.services.replication.allowSender({ fingerprint: primary.target.fingerprint });
});

after(async () => {
  await restarted?.close();
  for (const site of [primary, recovery]) {
    await site?.path.close().catch(() => {});
    if (site) await rm(site.dir, { recursive: true, force: true });
  }
});

async function writeBlocks(path: DataPath, count: number, fill: number): Promise<void> {
  const backend = path.diskService.backend(`${machineId}.${diskId}`);
  for (let i = 0; i < count; i++) await backend.write(i * 4096, Buffer.alloc(4096, fill), { fua: false });
  await backend.flush();
}

async function refusedBy(path: DataPath, what: string): Promise<ReplicationStatus> {
  let last: ReplicationStatus | null = null;
  await waitFor(
    what,
    async () => {
      last = await path.services.replication.status({ machineId });
      return /was failed over/.test(last.lastError ?? '');
    },
    30_000,
    () => JSON.stringify(last),
  );
  return last as unknown as ReplicationStatus;
}

test('the old primary sends nothing into a failed-over replica: not while running, not after its agent restarts', async () => {
  await primary.path.services.disk.attach({
    machineId,
    diskId,
    source: join(primary.dir, 'image.img'),
    sizeBytes: SIZE,
  });
  await writeBlocks(primary.path, 4, 1);
  const replication = primary.path.services.replication;
  await replication.start({ machineId, diskIds: [diskId], target: recovery.target, mode: 'full' });
  const journal = primary.path.diskService.backend(`${machineId}.${diskId}`).journal;
  await waitFor(
    'the initial copy and the writes to reach the replica',
    async () =>
      recovery.path.replicaStore.listDisks().some((d) => d.diskKey === diskKey) &&
      recovery.path.replicaStore.diskStatus(diskKey).durableSeq >= journal.status.writtenSeq &&
      (await replication.status({ machineId })).state === 'streaming',
    30_000,
  );

  // Failover: the machine starts from a writable view of the replica, which seals it.
  const seq = recovery.path.replicaStore.diskStatus(diskKey).durableSeq;
  const pointId = formatRecoveryPointRef({ kind: 'disk', diskKey, seq });
  await recovery.path.services.replica.openView({ machineId, pointId, writable: true, failover: true });
  const sealedAt = recovery.path.replicaStore.diskStatus(diskKey);
  assert.equal(sealedAt.sealed, true);

  // The source was never told (its host was cut off from the vault): it goes on writing and sending.
  await writeBlocks(primary.path, 8, 2);
  const refused = await refusedBy(primary.path, 'the receiver to refuse the old primary');
  assert.match(refused.lastError!, new RegExp(`replica '${diskKey}' was failed over`));
  assert.match(refused.lastError!, /records from the old primary are refused/);
  assert.notEqual(refused.state, 'streaming', 'the sender does not say it streams');
  assert.equal(recovery.path.replicaStore.diskStatus(diskKey).durableSeq, sealedAt.durableSeq);

  // Its agent restarts: replication resumes from the state file before any vault call, and is refused again.
  const writtenSeq = journal.status.writtenSeq;
  await primary.path.close();
  restarted = await startDataPath({
    dataDir: primary.dir,
    replicationListen: { host: '127.0.0.1', port: 0 },
    senderPollMs: 2,
    storageFolders: [primary.dir],
  });
  const resumed = await refusedBy(restarted, 'the resumed sender to be refused');
  assert.ok(resumed.queuedBytes > 0, 'what the source wrote stays in its journal');
  assert.ok(
    restarted.diskService.backend(`${machineId}.${diskId}`).journal.status.writtenSeq >= writtenSeq,
    'the restarted disk service recovered every record the source wrote',
  );
  const now = recovery.path.replicaStore.diskStatus(diskKey);
  assert.equal(now.durableSeq, sealedAt.durableSeq, 'nothing from the old primary reached the replica');
  assert.equal(now.sealed, true);

  // The vault's reconcile (the machine runs elsewhere now) stops that sender.
  assert.deepEqual(await restarted.services.replication.reconcile({ machineIds: [] }), {
    stopped: [machineId],
  });
  assert.equal((await restarted.services.replication.status({ machineId })).state, 'stopped');
});
