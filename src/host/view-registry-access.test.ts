/**
 * Views opened for access over TCP, read by NBD clients nobody here wrote
 * (libnbd's nbdinfo, qemu-img) with the view's pre-shared key, and refused
 * without it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { JournalRecord } from '../disk/index.ts';
import { NbdClient } from '../nbd/index.ts';
import { libnbdUri, PSK_FILE_NAME, pskFileLine, qemuImgArgs } from '../nbd/psk-access.ts';
import { ReplicaStore } from '../replica/index.ts';
import { run, runOk, scratchDir } from '../testing/nbd-test-fixture.ts';
import { modelAt, randomHistory } from '../testing/replica-test-model.ts';
import { type ViewAccess, ViewRegistry } from './view-registry.ts';

const SIZE = 1 << 20;
const DISK = 'vm1/d0';
let dir: { path: string; remove: () => Promise<void> };
let store: ReplicaStore;
let views: ViewRegistry;
let history: JournalRecord[];
let seq: number;

before(async () => {
  dir = await scratchDir('view-access');
  store = await ReplicaStore.open(join(dir.path, 'replica'), { now: () => 0 });
  history = randomHistory(7, {
    size: SIZE,
    count: 40,
    maxWrite: 16 << 10,
    firstSeq: 0,
    startTimeMs: 0,
  });
  await store.ensureDisk(DISK, SIZE);
  await store.append(DISK, history);
  const points = store.listPoints(DISK);
  seq = points[Math.floor(points.length / 2)]!.seq;
  views = await ViewRegistry.listen(store, join(dir.path, 'views.sock'), { host: '127.0.0.1', port: 0 });
});

after(async () => {
  await views.closeAll();
  await store.close();
  await dir.remove();
});

function accessFor(identity: string, ttlMs = 3_600_000): ViewAccess {
  return { identity, key: randomBytes(32), expiresAt: new Date(Date.now() + ttlMs) };
}

async function open(viewId: string, writable: boolean, access: ViewAccess) {
  const opened = await views.open({
    viewId,
    machineId: 'vm1',
    pointId: `point-of-${viewId}`,
    writable,
    seqs: { d0: seq },
    failover: false,
    access,
  });
  const disk = (await views.describe(opened)).disks[0]!;
  assert.ok(disk.accessUri !== undefined, 'an access view has a TCP URI');
  return { opened, exp: { uri: disk.accessUri, identity: access.identity } };
}

/** A folder holding the PSK file both libnbd and qemu read. */
async function pskDir(name: string, identity: string, key: Buffer): Promise<string> {
  const folder = join(dir.path, name);
  await runOk('mkdir', ['-p', folder]);
  await writeFile(join(folder, PSK_FILE_NAME), pskFileLine(identity, key.toString('hex')), { mode: 0o600 });
  return folder;
}

test('nbdinfo and qemu-img read an access view over TLS with its key; without TLS or with another key they are refused', async () => {
  const access = accessFor('acc-ro');
  const { opened, exp } = await open('ro', false, access);
  assert.match(exp.uri, /^nbds:\/\/acc-ro@127\.0\.0\.1:\d+\/ro\.d0$/);
  const keys = await pskDir('ro-keys', access.identity, access.key);

  const info = JSON.parse(await runOk('nbdinfo', ['--json', libnbdUri(exp, keys)]));
  assert.equal(info.exports[0]['export-size'], SIZE);
  assert.equal(info.exports[0].is_read_only, true);

  const out = join(dir.path, 'ro.raw');
  await runOk('qemu-img', ['convert', ...qemuImgArgs(exp, keys), '-O', 'raw', out]);
  assert.ok((await readFile(out)).equals(modelAt(SIZE, history, seq)), 'qemu-img read the point');

  const plain = await run('nbdinfo', [exp.uri.replace(/^nbds:\/\/[^@]+@/, 'nbd://')]);
  assert.notEqual(plain.code, 0, 'plain NBD is refused');
  const wrong = await pskDir('wrong-keys', access.identity, randomBytes(32));
  assert.notEqual((await run('nbdinfo', [libnbdUri(exp, wrong)])).code, 0, 'another key is refused');
  const qemuWrong = await run('qemu-img', ['info', ...qemuImgArgs(exp, wrong)]);
  assert.notEqual(qemuWrong.code, 0, 'qemu-img with another key is refused');

  // Another view's identity does not reach this view's export.
  const other = accessFor('acc-other');
  const second = await open('other', false, other);
  const otherKeys = await pskDir('other-keys', other.identity, other.key);
  const crossed = { uri: exp.uri.replace('acc-ro@', 'acc-other@'), identity: other.identity };
  assert.notEqual((await run('nbdinfo', [libnbdUri(crossed, otherKeys)])).code, 0);

  await views.close(second.opened, true);
  await views.close(opened, true);
  assert.notEqual(
    (await run('nbdinfo', [libnbdUri(exp, keys)])).code,
    0,
    'a closed view is no longer served',
  );
});

test('a writable access view takes writes that never reach the replica, and drops them when closed', async () => {
  const access = accessFor('acc-rw');
  const { opened, exp } = await open('rw', true, access);
  const url = new URL(exp.uri);
  const client = await NbdClient.connect(
    { host: url.hostname, port: Number(url.port) },
    { exportName: 'rw.d0', tls: { psk: { identity: access.identity, key: access.key } } },
  );
  await client.write(0, Buffer.alloc(4096, 9), { fua: true });
  assert.ok((await client.read(0, 4096)).equals(Buffer.alloc(4096, 9)));
  await client.disconnect();
  await views.close(opened, true);
  assert.equal(await store.keptView(DISK, 'rw'), null, 'its overlay is gone');
  const check = await store.openView(DISK, seq);
  assert.ok((await check.read(0, SIZE)).equals(modelAt(SIZE, history, seq)), 'the replica is unchanged');
  await check.close();
});

test('an access view closes when it expires', async () => {
  const short = accessFor('acc-exp', 400);
  const { exp } = await open('exp', false, short);
  const keys = await pskDir('exp-keys', short.identity, short.key);
  await runOk('nbdinfo', ['--size', libnbdUri(exp, keys)]);
  await new Promise((resolve) => setTimeout(resolve, 700));
  assert.equal(views.get('exp'), undefined, 'the expired view is closed');
  assert.notEqual((await run('nbdinfo', ['--size', libnbdUri(exp, keys)])).code, 0);
});
