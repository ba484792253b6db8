/**
 * Consistency groups across hosts: machine A on one host writes
 * "sent n" and then tells machine B on another host, which writes
 * "received n". Both replicate to a third host. At every multi-machine point
 * B holds no "received n" whose "sent n" A lacks; each machine's own latest
 * point does not promise that (A's replication lags), which is why groups exist.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { selectGroupRecoveryPoint, selectRecoveryPoint } from '../../domain/index.ts';
import type { RecoveryPoint } from '../../domain/model.ts';
import type { WriteHold } from '../../host/host-services.ts';
import { NbdClient } from '../../nbd/index.ts';
import { startTestSite, type TestSite } from '../../testing/data-path-site.ts';
import { waitFor } from '../../testing/replication-test-fixture.ts';
import { type CutDisk, takeGroupCut } from './group-cut.ts';

const SIZE = 8 << 20;
const SLOT = 4096;
const diskId = 'd0';

let hostA: TestSite;
let hostB: TestSite;
let recovery: TestSite;
const clients: NbdClient[] = [];

before(async () => {
  [hostA, hostB, recovery] = await Promise.all([
    startTestSite('a'),
    startTestSite('b'),
    startTestSite('recovery'),
  ]);
  for (const site of [hostA, hostB]) {
    await recovery.path.services.replication.allowSender({ fingerprint: site.target.fingerprint });
  }
});

after(async () => {
  for (const c of clients) await c.disconnect().catch(() => {});
  for (const site of [hostA, hostB, recovery]) {
    await site?.path.close();
    if (site) await rm(site.dir, { recursive: true, force: true });
  }
});

/** Attaches the machine's disk on its host and connects to it over NBD, as its guest would. */
async function protect(site: TestSite, machineId: string): Promise<NbdClient> {
  const disk = await site.path.services.disk.attach({
    machineId,
    diskId,
    source: join(site.dir, `${machineId}.img`),
    sizeBytes: SIZE,
  });
  await site.path.services.replication.start({
    machineId,
    diskIds: [diskId],
    target: recovery.target,
    mode: 'full',
  });
  const socket = new URL(disk.nbdUri).searchParams.get('socket')!;
  const client = await NbdClient.connect({ path: socket }, { exportName: `${machineId}.${diskId}` });
  clients.push(client);
  return client;
}

function record(word: string, n: number): Buffer {
  const data = Buffer.alloc(SLOT);
  data.write(`${word} ${n}\n`);
  return data;
}

/** The n of every "<word> n" record on a disk image. */
function recordsOf(image: Buffer, word: string): Set<number> {
  const out = new Set<number>();
  for (let at = 0; at < image.length; at += SLOT) {
    const text = image.subarray(at, at + 32).toString('latin1');
    const match = /^(\w+) (\d+)\n/.exec(text);
    if (match && match[1] === word) out.add(Number(match[2]));
  }
  return out;
}

async function readAt(point: RecoveryPoint): Promise<Buffer> {
  const replica = recovery.path.services.replica;
  const view = await replica.openView({ machineId: point.machineId, pointId: point.id, writable: false });
  try {
    return await recovery.path.viewBackend(view.viewId, diskId).read(0, SIZE);
  } finally {
    await replica.closeView({ viewId: view.viewId, discardWrites: true });
  }
}

/** Received records in B's point whose sent record is not in A's point. */
async function effectsWithoutCause(a: RecoveryPoint, b: RecoveryPoint): Promise<number[]> {
  const sent = recordsOf(await readAt(a), 'sent');
  const received = recordsOf(await readAt(b), 'received');
  assert.ok(received.size > 0, `B's point ${b.id} holds some received records`);
  return [...received].filter((n) => !sent.has(n));
}

class Writer {
  n = 0;
  maxStallMs = 0;
  #stop = false;
  #done: Promise<void> = Promise.resolve();
  readonly #a: NbdClient;
  readonly #b: NbdClient;

  constructor(a: NbdClient, b: NbdClient) {
    this.#a = a;
    this.#b = b;
  }

  start(): void {
    this.#stop = false;
    this.#done = (async () => {
      while (!this.#stop && this.n < SIZE / SLOT - 1) {
        const n = ++this.n;
        const t0 = performance.now();
        await this.#a.write(n * SLOT, record('sent', n));
        await this.#a.flush();
        // A has it durably: now A "tells" B, and B records it.
        const t1 = performance.now();
        await this.#b.write(n * SLOT, record('received', n));
        await this.#b.flush();
        const t2 = performance.now();
        this.maxStallMs = Math.max(this.maxStallMs, t1 - t0, t2 - t1);
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#done;
  }
}

const members = [
  { id: 'app-a', name: 'app-a' },
  { id: 'app-b', name: 'app-b' },
];

async function catalog(): Promise<RecoveryPoint[]> {
  const replica = recovery.path.services.replica;
  return [
    ...(await replica.listPoints({ machineId: 'app-a' })),
    ...(await replica.listPoints({ machineId: 'app-b' })),
  ];
}

test('multi-machine points across two hosts never hold an effect without its cause; single points can', async (t) => {
  const [a, b] = await Promise.all([protect(hostA, 'app-a'), protect(hostB, 'app-b')]);
  await waitFor(
    'initial syncs',
    async () => {
      const states = await Promise.all([
        hostA.path.services.replication.status({ machineId: 'app-a' }),
        hostB.path.services.replication.status({ machineId: 'app-b' }),
      ]);
      return states.every((s) => s.state === 'streaming');
    },
    120_000,
  );
  const participants = [
    { hostId: 'a', machineIds: ['app-a'], disk: hostA.path.services.disk },
    { hostId: 'b', machineIds: ['app-b'], disk: hostB.path.services.disk },
  ];
  const writer = new Writer(a, b);
  // A failed assertion must not leave the writer running past the test.
  t.after(() => writer.stop());
  writer.start();
  await new Promise((resolve) => setTimeout(resolve, 100));
  const quietStall = writer.maxStallMs;
  const cuts: string[] = [];
  let longestCut = 0;
  for (let i = 0; i < 8; i++) {
    const cut = await takeGroupCut({ participants, holdTimeoutMs: 1000 });
    cuts.push(cut.groupPointId);
    longestCut = Math.max(longestCut, cut.elapsedMs);
    await new Promise((resolve) => setTimeout(resolve, 40));
  }
  const cutStall = writer.maxStallMs;
  await waitFor(
    'the cuts at the replica',
    async () => {
      const points = await catalog();
      return cuts.every((id) =>
        members.every((m) => points.some((p) => p.machineId === m.id && p.groupPointId === id)),
      );
    },
    120_000,
  );

  // A's replication stops (a lagging link); both machines go on writing, B's replica keeps up.
  await hostA.path.services.replication.stop({ machineId: 'app-a' });
  const before = writer.n;
  await waitFor('more records after A stopped replicating', () => writer.n > before + 50, 120_000);
  await writer.stop();
  const last = await hostB.path.services.disk.insertMarker({
    machineIds: ['app-b'],
    type: 'crash-consistent',
    groupPointId: null,
  });
  await waitFor(
    "the cuts and B's last marker at the replica",
    async () => {
      const points = await catalog();
      const has = (machineId: string, id: string) =>
        points.some((p) => p.machineId === machineId && p.groupPointId === id);
      return cuts.every((id) => has('app-a', id) && has('app-b', id)) && has('app-b', last.markerId);
    },
    120_000,
  );
  console.log(
    `# ${writer.n} record pairs, ${cuts.length} cuts (longest ${longestCut} ms); ` +
      `max write+flush stall ${quietStall.toFixed(1)} ms without cuts, ${cutStall.toFixed(1)} ms with`,
  );
  assert.ok(cutStall < 1000, `no write waited for the 1000 ms bound (${cutStall} ms)`);

  const points = await catalog();
  for (const id of cuts) {
    const pa = points.find((p) => p.machineId === 'app-a' && p.groupPointId === id)!;
    const pb = points.find((p) => p.machineId === 'app-b' && p.groupPointId === id)!;
    assert.deepEqual(await effectsWithoutCause(pa, pb), [], `multi-machine point ${id}`);
  }
  const group = selectGroupRecoveryPoint(points, members, 'latest-multi-machine-processed');
  assert.equal(group.groupPointId, cuts.at(-1));
  assert.deepEqual(await effectsWithoutCause(group.points['app-a']!, group.points['app-b']!), []);

  // Each machine's own latest point: B's is newer than A's, and holds receipts A's never sent.
  const latestA = selectRecoveryPoint(points, members[0]!, { option: 'latest' }).point;
  const latestB = selectRecoveryPoint(points, members[1]!, { option: 'latest' }).point;
  const orphans = await effectsWithoutCause(latestA, latestB);
  assert.ok(
    orphans.length > 0,
    'single-machine latest points hold received records without their sent record',
  );
});

/** A host that never answers (a stuck agent). */
const stuckDisk: CutDisk = {
  holdWrites: () => new Promise<WriteHold>(() => {}),
  insertMarkerHeld: () => new Promise(() => {}),
  releaseWrites: async () => ({ heldMs: null }),
};

test('a stuck host fails the cut within the bound and the other host writes on', async () => {
  const disk = hostA.path.services.disk;
  const socket = new URL((await disk.list({ machineId: 'app-a' }))[0]!.nbdUri).searchParams.get('socket')!;
  const client = await NbdClient.connect({ path: socket }, { exportName: `app-a.${diskId}` });
  clients.push(client);
  let maxMs = 0;
  let stop = false;
  const loop = (async () => {
    for (let n = 0; !stop; n++) {
      const t0 = performance.now();
      await client.write((n % 100) * SLOT, record('probe', n));
      await client.flush();
      maxMs = Math.max(maxMs, performance.now() - t0);
    }
  })();
  const started = performance.now();
  await assert.rejects(
    takeGroupCut({
      participants: [
        { hostId: 'a', machineIds: ['app-a'], disk },
        { hostId: 'stuck', machineIds: ['app-x'], disk: stuckDisk },
      ],
      holdTimeoutMs: 300,
    }),
    (e: Error & { code?: string }) => e.code === 'unreachable' && /host 'stuck'/.test(e.message),
  );
  const failedAfter = performance.now() - started;
  await new Promise((resolve) => setTimeout(resolve, 100));
  stop = true;
  await loop;
  console.log(
    `# stuck host: cut failed after ${failedAfter.toFixed(0)} ms, max write stall ${maxMs.toFixed(1)} ms`,
  );
  assert.ok(failedAfter < 300 + 200, `the cut gave up within the bound (${failedAfter} ms)`);
  assert.ok(maxMs < 300 + 150, `writes waited at most about the 300 ms bound (${maxMs} ms)`);
  assert.ok(maxMs >= 200, `writes were held during the cut (${maxMs} ms)`);
});

test('a host releases a hold by itself after its timeout, and then refuses the marker', async () => {
  const disk = hostA.path.services.disk;
  const hold = await disk.holdWrites({ machineIds: ['app-a'], timeoutMs: 150 });
  await new Promise((resolve) => setTimeout(resolve, 250));
  await assert.rejects(
    disk.insertMarkerHeld({ holdId: hold.holdId, type: 'crash-consistent', groupPointId: 'late' }),
    (e: Error & { code?: string }) => e.code === 'conflict' && /expired or was released/.test(e.message),
  );
  assert.deepEqual(await disk.releaseWrites({ holdId: hold.holdId }), { heldMs: null });
  await assert.rejects(
    disk.holdWrites({ machineIds: ['app-a'], timeoutMs: 60_000 }),
    (e: Error & { code?: string }) =>
      e.code === 'validation_failed' && /between 1 and 5000 ms/.test(e.message),
  );
  await assert.rejects(
    disk.holdWrites({ machineIds: ['nobody'], timeoutMs: 100 }),
    (e: Error & { code?: string }) => e.code === 'not_found',
  );
});
