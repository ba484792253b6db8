import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FileReplicaSink } from '../testing/file-replica-sink.fixture.ts';
import {
  hostIdentities,
  openSource,
  PROCESS_DISK_KEY,
  PROCESS_DISK_SIZE,
  waitFor,
} from '../testing/replication-test-fixture.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import { Receiver } from './receiver.ts';
import { Sender } from './sender.ts';

const FIXTURE = new URL('../testing/replication-process.fixture.ts', import.meta.url).pathname;
const NODE = process.execPath;

interface Child {
  proc: ChildProcess;
  output: Promise<string>;
}

function startChild(args: string[]): Promise<Child> {
  const proc = spawn(NODE, [FIXTURE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr?.on('data', (d) => {
    err += d;
  });
  const output = new Promise<string>((resolve) => {
    proc.on('exit', () => resolve(out));
  });
  return new Promise((resolve, reject) => {
    proc.stdout?.on('data', (d) => {
      out += d;
      if (out.includes('ready\n')) resolve({ proc, output });
    });
    proc.on('exit', (code, signal) => {
      if (!out.includes('ready\n')) resolve({ proc, output });
      if (code !== 0 && signal === null) reject(new Error(`fixture ${args[0]} exited with ${code}: ${err}`));
    });
  });
}

function kill9(child: Child): Promise<void> {
  return new Promise((resolve) => {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) return resolve();
    child.proc.once('exit', () => resolve());
    child.proc.kill('SIGKILL');
  });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

async function setup(): Promise<{ dir: string; identitiesPath: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'haven-repl-crash-'));
  const identitiesPath = join(dir, 'identities.json');
  await writeFile(identitiesPath, JSON.stringify(await hostIdentities()));
  return { dir, identitiesPath };
}

function assertAppliedOnce(ranges: [number, number][]): void {
  for (let i = 1; i < ranges.length; i++) {
    const [prev, cur] = [ranges[i - 1] as [number, number], ranges[i] as [number, number]];
    assert.ok(cur[0] > prev[1], `records ${cur[0]}..${prev[1]} were applied twice`);
  }
}

test('kill -9 of the receiver mid-stream: the sender resumes, acknowledged records survive, none applied twice', async () => {
  const { dir, identitiesPath } = await setup();
  const [primary, recovery] = await hostIdentities();
  const port = await freePort();
  const source = await openSource(dir, PROCESS_DISK_SIZE);
  const sender = new Sender({ identity: primary, backoffMinMs: 20, backoffMaxMs: 100, batchBytes: 64 << 10 });
  let child = await startChild(['receiver', dir, String(port), identitiesPath]);
  try {
    sender.addDisk({
      diskKey: PROCESS_DISK_KEY,
      source,
      receiver: { host: '127.0.0.1', port, fingerprint: recovery.fingerprint },
      statePath: join(dir, 'sender-state.json'),
    });
    const rnd = new SeededRandom(11);

    const model = Buffer.alloc(PROCESS_DISK_SIZE);
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const length = rnd.int(1, 16) * 4096;
        const offset = rnd.int(0, (PROCESS_DISK_SIZE - length) / 4096) * 4096;
        const data = Buffer.alloc(length, rnd.int(1, 255));
        data.copy(model, offset);
        await source.write(offset, data, { fua: false });
        if (i % 20 === 19) await source.flush();
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    for (let round = 0; round < 3; round++) {
      await new Promise((r) => setTimeout(r, rnd.int(300, 900)));
      const ackedBefore = sender.status(PROCESS_DISK_KEY).lastAckedSeq;
      await kill9(child);
      const sink = new FileReplicaSink(join(dir, 'replica'));
      const durableAfter = await sink.durableSequence(PROCESS_DISK_KEY).catch(() => -1);
      assert.ok(
        durableAfter >= ackedBefore,
        `acknowledged ${ackedBefore} but the replica holds only ${durableAfter}`,
      );
      child = await startChild(['receiver', dir, String(port), identitiesPath]);
    }
    stop = true;
    await writer;
    await source.flush();
    await waitFor('catch-up', () => {
      const st = sender.status(PROCESS_DISK_KEY);
      return st.state === 'streaming' && st.lastAckedSeq >= source.journal.status.writtenSeq;
    });
    assert.ok(sender.status(PROCESS_DISK_KEY).connects >= 4);
    await kill9(child);
    const sink = new FileReplicaSink(join(dir, 'replica'));
    const state = await sink.state(PROCESS_DISK_KEY);
    assertAppliedOnce(state.applied);
    // An interrupted initial copy is redone; nothing else may have been needed.
    assert.ok(
      state.syncKinds.every((k) => k === 'initial'),
      `syncs: ${state.syncKinds.join(', ')}`,
    );
    assert.ok((await readFile(sink.imagePath(PROCESS_DISK_KEY))).equals(model), 'replica equals the model');
  } finally {
    await kill9(child);
    await sender.close();
    await source.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('kill -9 of the sender (and its disk service) mid-stream: it restarts and resumes from the durable sequence', async () => {
  const { dir, identitiesPath } = await setup();
  const [primary, recovery] = await hostIdentities();
  const sink = new FileReplicaSink(join(dir, 'replica'));
  const receiver = new Receiver({ identity: recovery, sink, allowedSenders: [primary.fingerprint], port: 0 });
  const { port } = await receiver.listen();
  const rnd = new SeededRandom(12);
  let child: Child | null = null;
  try {
    for (let round = 0; round < 3; round++) {
      child = await startChild(['sender', dir, String(port), identitiesPath, String(100 + round)]);
      await new Promise((r) => setTimeout(r, rnd.int(600, 1200)));
      await kill9(child);
    }
    const finish = await startChild(['finish', dir, String(port), identitiesPath]);
    const status = JSON.parse((await finish.output).trim()) as { lastAckedSeq: number; state: string };
    assert.equal(status.state, 'streaming');
    const state = await sink.state(PROCESS_DISK_KEY);
    assert.ok(state.durableSeq > 100, `only ${state.durableSeq} records replicated`);
    assertAppliedOnce(state.applied);
    // A gap (trimmed before acknowledged) would have forced a hash resync.
    assert.ok(
      state.syncKinds.every((k) => k === 'initial'),
      `syncs: ${state.syncKinds.join(', ')}`,
    );
    const [sourceImage, replica] = await Promise.all([
      readFile(join(dir, 'source.img')),
      readFile(sink.imagePath(PROCESS_DISK_KEY)),
    ]);
    assert.ok(replica.equals(sourceImage), 'replica equals the recovered source');
  } finally {
    if (child !== null) await kill9(child);
    await receiver.close();
    await sink.close();
    await rm(dir, { recursive: true, force: true });
  }
});
