/** Shared setup of replication tests: identities, a journaled source disk, a receiver with a file sink. */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JournaledBackend } from '../disk/index.ts';
import { Receiver } from '../replication/receiver.ts';
import { generateHostIdentity, type HostIdentity } from '../replication/replication-tls.ts';
import { Sender } from '../replication/sender.ts';
import type { SenderOptions } from '../replication/sender-options.ts';
import { createSparseImage } from '../storage/index.ts';
import { FileReplicaSink } from './file-replica-sink.fixture.ts';

/** The disk of the kill -9 tests' child processes. */
export const PROCESS_DISK_SIZE = 8 << 20;
export const PROCESS_DISK_KEY = 'machine-9/disk-0';

let identities: Promise<[HostIdentity, HostIdentity]> | null = null;

/** A primary and a recovery host identity, made once per test process (openssl takes a moment). */
export function hostIdentities(): Promise<[HostIdentity, HostIdentity]> {
  identities ??= Promise.all([generateHostIdentity('primary'), generateHostIdentity('recovery')]);
  return identities;
}

export async function openSource(
  dir: string,
  sizeBytes: number,
  capacityBytes = 64 << 20,
): Promise<JournaledBackend> {
  const imagePath = join(dir, 'source.img');
  await createSparseImage(imagePath, sizeBytes).catch((e) => {
    if (e.code !== 'conflict') throw e;
  });
  return JournaledBackend.open({
    imagePath,
    journalDir: join(dir, 'journal'),
    journalCapacityBytes: capacityBytes,
  });
}

export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
  detail?: () => string,
): Promise<void> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > timeoutMs)
      throw new Error(`timed out waiting for ${what}${detail ? `: ${detail()}` : ''}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Rig {
  dir: string;
  source: JournaledBackend;
  sink: FileReplicaSink;
  receiver: Receiver;
  port: number;
  sender: Sender;
  diskKey: string;
  /** Waits until the receiver holds every record written so far. */
  caughtUp(timeoutMs?: number): Promise<void>;
  sourceBytes(): Promise<Buffer>;
  replicaBytes(): Promise<Buffer>;
  close(): Promise<void>;
}

export async function startRig(options: {
  sizeBytes: number;
  capacityBytes?: number;
  sender?: Partial<SenderOptions>;
  before?: (source: JournaledBackend) => Promise<void>;
}): Promise<Rig> {
  const [primary, recovery] = await hostIdentities();
  const dir = await mkdtemp(join(tmpdir(), 'haven-repl-'));
  const source = await openSource(dir, options.sizeBytes, options.capacityBytes);
  await options.before?.(source);
  const sink = new FileReplicaSink(join(dir, 'replica'));
  const receiver = new Receiver({ identity: recovery, sink, allowedSenders: [primary.fingerprint], port: 0 });
  const { port } = await receiver.listen();
  const sender = new Sender({ identity: primary, backoffMinMs: 20, backoffMaxMs: 200, ...options.sender });
  const diskKey = 'machine-1/disk-0';
  sender.addDisk({
    diskKey,
    source,
    receiver: { host: '127.0.0.1', port, fingerprint: recovery.fingerprint },
    statePath: join(dir, 'sender-state.json'),
  });
  const rig: Rig = {
    dir,
    source,
    sink,
    receiver,
    port,
    sender,
    diskKey,
    async caughtUp(timeoutMs = 30_000) {
      await waitFor(
        'the replica to catch up',
        () => {
          const st = sender.status(diskKey);
          return (
            st.state === 'streaming' &&
            st.lastAckedSeq >= source.journal.status.writtenSeq &&
            !st.resyncRequired &&
            (st.lastSync?.completed ?? false)
          );
        },
        timeoutMs,
      );
    },
    sourceBytes: () => readFile(join(dir, 'source.img')),
    replicaBytes: () => readFile(sink.imagePath(diskKey)),
    async close() {
      await sender.close();
      await receiver.close();
      await sink.close();
      await source.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return rig;
}
