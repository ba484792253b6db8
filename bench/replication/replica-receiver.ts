/**
 * The recovery host's end of the replication benchmarks: a Receiver into the
 * real ReplicaStore (as `host/data-path.ts` opens it), in a process of its
 * own as on a recovery host, so that it does not share the sender's event loop.
 *
 * As a module: `startReceiverProcess(storeDir, identitiesPath)`.
 * As a script: node bench/replication/replica-receiver.ts STORE_DIR IDENTITIES_JSON
 * (sends `{port}` over IPC once listening; answers `cpu` with its CPU seconds;
 * closes the store and exits on SIGTERM).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { HostIdentity } from '../../src/replication/index.ts';

export interface ReceiverProcess {
  port: number;
  /** CPU seconds (user + system) the receiver process has used so far. */
  cpuSeconds(): Promise<number>;
  /** Closes the receiver and the store, and waits for the process to end. */
  stop(): Promise<void>;
}

type Reply = { port: number } | { cpuSeconds: number };

/** Starts the receiver in a child process on a free port of 127.0.0.1. */
export async function startReceiverProcess(
  storeDir: string,
  identitiesPath: string,
): Promise<ReceiverProcess> {
  const child = spawn(process.execPath, [import.meta.filename, storeDir, identitiesPath], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const replies: Array<(reply: Reply) => void> = [];
  child.on('message', (reply: Reply) => replies.shift()?.(reply));
  const next = () => new Promise<Reply>((resolve) => replies.push(resolve));
  const exited = once(child, 'exit');
  const ready = await Promise.race([next(), exited.then(() => null)]);
  if (ready === null || !('port' in ready)) throw new Error('the receiver process ended before listening');
  return {
    port: ready.port,
    async cpuSeconds() {
      const reply = next();
      child.send('cpu');
      const r = await reply;
      return 'cpuSeconds' in r ? r.cpuSeconds : Number.NaN;
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

if (import.meta.main) {
  const { ReplicaStore } = await import('../../src/replica/index.ts');
  const { Receiver } = await import('../../src/replication/index.ts');
  const [storeDir, identitiesPath] = process.argv.slice(2);
  if (storeDir === undefined || identitiesPath === undefined) {
    process.stderr.write('usage: replica-receiver.ts STORE_DIR IDENTITIES_JSON\n');
    process.exit(2);
  }
  const [primary, recovery] = JSON.parse(await readFile(identitiesPath, 'utf8')) as [
    HostIdentity,
    HostIdentity,
  ];
  const store = await ReplicaStore.open(storeDir, { retentionIntervalMs: 60_000 });
  const receiver = new Receiver({
    identity: recovery,
    sink: store,
    allowedSenders: [primary.fingerprint],
    host: '127.0.0.1',
    port: 0,
  });
  const { port } = await receiver.listen();
  process.send?.({ port });
  process.on('message', () => {
    const { user, system } = process.cpuUsage();
    process.send?.({ cpuSeconds: (user + system) / 1e6 });
  });
  process.once('SIGTERM', () => {
    void (async () => {
      await receiver.close();
      await store.close();
      process.exit(0);
    })();
  });
}
