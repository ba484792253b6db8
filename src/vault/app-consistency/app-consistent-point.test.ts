/**
 * App-consistent points through a hook script, against a real disk service:
 * the hook "freezes the guest" (the writer below stops writing while the
 * freeze file exists, as a frozen file system would); a hung hook is killed at
 * the bound and thawed, so writes never stop for longer than the bound.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type DataPath, startDataPath } from '../../host/data-path.ts';
import { NbdClient } from '../../nbd/index.ts';
import { guestAgentQuiescer, hookQuiescer, takeAppConsistentPoint } from './app-consistent-point.ts';

let dir: string;
let path: DataPath;
let client: NbdClient;
const machine = { id: 'app-1', name: 'app-1' };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-appc-'));
  path = await startDataPath({
    dataDir: dir,
    replicationListen: { host: '127.0.0.1', port: 0 },
    storageFolders: [dir],
  });
  const disk = await path.services.disk.attach({
    machineId: machine.id,
    diskId: 'd0',
    source: join(dir, 'd0.img'),
    sizeBytes: 1 << 20,
  });
  const socket = new URL(disk.nbdUri).searchParams.get('socket')!;
  client = await NbdClient.connect({ path: socket }, { exportName: `${machine.id}.d0` });
});

after(async () => {
  await client?.disconnect();
  await path?.close();
  await rm(dir, { recursive: true, force: true });
});

async function hook(name: string, freezeBody: string): Promise<string> {
  const file = join(dir, name);
  const frozen = join(dir, 'frozen');
  await writeFile(
    file,
    `#!/bin/sh\ncase "$1" in\n  freeze) touch ${frozen}; ${freezeBody} ;;\n  thaw) rm -f ${frozen} ;;\nesac\n`,
  );
  await chmod(file, 0o755);
  return file;
}

/** Writes through NBD, waiting while the guest is "frozen"; the longest gap between two completed writes. */
async function whileWriting<T>(action: () => Promise<T>): Promise<{ result: T; maxGapMs: number }> {
  let stop = false;
  let maxGapMs = 0;
  const loop = (async () => {
    let last = performance.now();
    for (let n = 0; !stop; n++) {
      while (existsSync(join(dir, 'frozen')) && !stop) await new Promise((r) => setTimeout(r, 2));
      await client.write((n % 64) * 4096, Buffer.alloc(4096, n % 251));
      await client.flush();
      const now = performance.now();
      maxGapMs = Math.max(maxGapMs, now - last);
      last = now;
    }
  })();
  await new Promise((r) => setTimeout(r, 50));
  const result = await action();
  await new Promise((r) => setTimeout(r, 50));
  stop = true;
  await loop;
  return { result, maxGapMs };
}

test('a working hook freezes, the marker goes in, and the guest thaws', async () => {
  const quiescer = hookQuiescer(await hook('ok-hook', 'sleep 0.05'), machine);
  const { result, maxGapMs } = await whileWriting(() =>
    takeAppConsistentPoint({ machineIds: [machine.id], quiescer, disk: path.services.disk, timeoutMs: 1000 }),
  );
  assert.equal(result.error, null);
  assert.ok(result.ok && result.markerId !== null);
  assert.equal(existsSync(join(dir, 'frozen')), false);
  assert.ok(maxGapMs >= 40, `writes stopped while frozen (${maxGapMs} ms)`);
});

test('a hung hook is killed at the bound, thawed, and adds no marker', async () => {
  const quiescer = hookQuiescer(await hook('hung-hook', 'sleep 1000'), machine);
  const { result, maxGapMs } = await whileWriting(() =>
    takeAppConsistentPoint({ machineIds: [machine.id], quiescer, disk: path.services.disk, timeoutMs: 300 }),
  );
  console.log(
    `# hung hook: gave up after ${result.frozenMs} ms; longest write gap ${maxGapMs.toFixed(0)} ms`,
  );
  assert.equal(result.ok, false);
  assert.equal(result.markerId, null);
  assert.match(result.error ?? '', /did not finish in time and was killed/);
  assert.equal(existsSync(join(dir, 'frozen')), false);
  assert.ok(maxGapMs >= 250, `writes were frozen (${maxGapMs} ms)`);
  assert.ok(maxGapMs < 300 + 200, `writes stopped for at most about the 300 ms bound (${maxGapMs} ms)`);
});

test('a failing hook is reported with its output', async () => {
  const quiescer = hookQuiescer(await hook('bad-hook', 'echo cannot reach guest >&2; exit 3'), machine);
  const result = await takeAppConsistentPoint({
    machineIds: [machine.id],
    quiescer,
    disk: path.services.disk,
    timeoutMs: 1000,
  });
  assert.equal(result.ok, false);
  assert.match(result.error ?? '', /failed \(exit 3\): cannot reach guest/);
});

test('a guest agent that does not answer is abandoned at the bound, thawed, and adds no marker', async () => {
  const calls: string[] = [];
  // The host's answer that never comes (the real agent case is in guest-agent-point.test.ts).
  const hypervisor = {
    freezeFilesystems: async (params: { name: string; timeoutMs?: number }) => {
      calls.push(`freeze ${params.name} ${params.timeoutMs}`);
      return new Promise<never>(() => {});
    },
    thawFilesystems: async (params: { name: string; timeoutMs?: number }) => {
      calls.push(`thaw ${params.name}`);
      return { name: params.name, filesystems: 0 };
    },
  };
  const quiescer = guestAgentQuiescer(hypervisor, { name: 'app-1', importedFrom: null }, 300);
  const result = await takeAppConsistentPoint({
    machineIds: [machine.id],
    quiescer,
    disk: path.services.disk,
    timeoutMs: 300,
  });
  assert.equal(result.ok, false);
  assert.equal(result.markerId, null);
  assert.match(result.error ?? '', /guest agent's freeze of domain 'app-1' did not finish in time/);
  assert.ok(result.frozenMs < 300 + 200, `gave up at about the bound (${result.frozenMs} ms)`);
  assert.deepEqual(calls, ['freeze app-1 300', 'thaw app-1']);
});

test('a guest agent that froze no file system quiesced nothing: no marker', async () => {
  const hypervisor = {
    freezeFilesystems: async ({ name }: { name: string }) => ({ name, filesystems: 0 }),
    thawFilesystems: async ({ name }: { name: string }) => ({ name, filesystems: 0 }),
  };
  const result = await takeAppConsistentPoint({
    machineIds: [machine.id],
    quiescer: guestAgentQuiescer(hypervisor, { name: 'app-1', importedFrom: null }, 1000),
    disk: path.services.disk,
    timeoutMs: 1000,
  });
  assert.equal(result.markerId, null);
  assert.match(result.error ?? '', /froze no file system/);
});
