import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DiskService } from '../disk/disk-service.ts';
import { HavenError } from '../errors/index.ts';
import { spawnHandStartedQemu } from '../testing/hypervisor-test.fixture.ts';
import { until } from '../testing/until.ts';
import { hostDiskService } from './host-disk-service.ts';
import { describeWriters, imageWriters } from './image-writers.ts';

let dir: string;
const children: ChildProcess[] = [];
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-writers-'));
});
after(async () => {
  for (const child of children) child.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

async function image(name: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, '');
  await truncate(path, 1 << 20);
  return path;
}

/** A process that opens the image with `mode` and holds it until killed. */
function holder(path: string, mode: 'r+b' | 'rb'): ChildProcess {
  const child = spawn(
    'python3',
    ['-c', `import sys,time\nf=open(sys.argv[1],'${mode}')\nprint('open',flush=True)\ntime.sleep(600)`, path],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(child);
  return child;
}

const opened = (child: ChildProcess) =>
  new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));

test('a process holding the image open for writing is named; a reader is not; after it exits, none', async () => {
  const path = await image('rw.img');
  const reader = holder(path, 'rb');
  await opened(reader);
  assert.deepEqual(
    await imageWriters(path),
    { writers: [], qemuWriteLock: false },
    'a reader writes nothing',
  );
  const writer = holder(path, 'r+b');
  await opened(writer);
  const found = await imageWriters(path);
  assert.equal(found.qemuWriteLock, false, 'python takes no QEMU lock');
  assert.deepEqual(
    found.writers.map((w) => w.pid),
    [writer.pid],
  );
  assert.match(found.writers[0]!.command, /python3 -c/);
  assert.match(describeWriters(found), new RegExp(`pid ${writer.pid} \\(.*python3`));
  writer.kill('SIGKILL');
  reader.kill('SIGKILL');
  await Promise.all([exited(writer), exited(reader)]);
  assert.deepEqual(await imageWriters(path), { writers: [], qemuWriteLock: false });
});

test('a QEMU writing images is named with its guest name; on qcow2 it also holds the write lock', async () => {
  const raw = await image('qemu.img');
  const qcow2 = join(dir, 'qemu.qcow2');
  await new Promise<void>((resolve, reject) =>
    spawn('qemu-img', ['create', '-q', '-f', 'qcow2', qcow2, '1M'], { stdio: 'inherit' }).once(
      'exit',
      (code) => (code === 0 ? resolve() : reject(new Error(`qemu-img create: ${code}`))),
    ),
  );
  const qemu = spawnHandStartedQemu('guest=hand-started,debug-threads=on', [
    { file: raw, format: 'raw' },
    { file: qcow2, format: 'qcow2' },
  ]);
  children.push(qemu);
  for (const path of [raw, qcow2]) {
    const found = await until(
      `QEMU holding ${path}`,
      async () => {
        const f = await imageWriters(path);
        return f.writers.length > 0 ? f : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    assert.equal(found.writers[0]!.pid, qemu.pid);
    assert.equal(found.writers[0]!.qemuName, 'hand-started');
    assert.match(
      describeWriters(found),
      new RegExp(`pid ${qemu.pid} \\(.*qemu-system-x86_64.*\\), QEMU guest 'hand-started'`),
    );
    // qemu-img info (without -U) fails on a qcow2 image a QEMU holds; raw has no header to protect.
    assert.equal(found.qemuWriteLock, path === qcow2, path);
  }
  qemu.kill('SIGKILL');
  await exited(qemu);
  for (const path of [raw, qcow2]) {
    assert.deepEqual(await imageWriters(path), { writers: [], qemuWriteLock: false });
  }
});

test("the host's disk service refuses to attach an image another process writes, and attaches it once it exits", async () => {
  const path = await image('attach.img');
  const service = await DiskService.start({ socket: join(dir, 'disks.sock') });
  try {
    const disks = hostDiskService(service, { dataDir: dir });
    const ref = { machineId: 'vm1', diskId: 'disk0', source: path, sizeBytes: 1 << 20 };
    const writer = holder(path, 'r+b');
    await opened(writer);
    await assert.rejects(disks.attach(ref), (e: unknown) => {
      assert.ok(e instanceof HavenError && e.code === 'conflict');
      assert.match(e.message, new RegExp(`disk disk0 of machine vm1: .* pid ${writer.pid} \\(.*python3`));
      return true;
    });
    assert.deepEqual(await disks.list(), [], 'nothing was attached');
    writer.kill('SIGKILL');
    await exited(writer);
    assert.equal((await disks.attach(ref)).source, path);
    assert.deepEqual(
      await disks.writers(ref),
      { writers: [], qemuWriteLock: false },
      "the disk service's own open file is not a foreign writer",
    );
  } finally {
    await service.close();
  }
});
