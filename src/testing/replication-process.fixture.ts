/**
 * A replication end in its own process, for kill -9 tests.
 *
 *   receiver DIR PORT IDENTITIES    serve a FileReplicaSink in DIR/replica on PORT; prints "ready"
 *   sender DIR PORT IDENTITIES SEED write random operations to DIR's disk while replicating, until killed
 *   finish DIR PORT IDENTITIES      replicate until caught up, close cleanly, print the status as JSON
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Receiver } from '../replication/receiver.ts';
import type { HostIdentity } from '../replication/replication-tls.ts';
import { Sender } from '../replication/sender.ts';
import { FileReplicaSink } from './file-replica-sink.fixture.ts';
import { openSource, PROCESS_DISK_KEY, PROCESS_DISK_SIZE, waitFor } from './replication-test-fixture.ts';
import { SeededRandom } from './seeded-random.ts';

const [mode, dir, portText, identitiesPath, seedText] = process.argv.slice(2);
const port = Number(portText);
const [primary, recovery] = JSON.parse(await readFile(identitiesPath as string, 'utf8')) as [
  HostIdentity,
  HostIdentity,
];

if (mode === 'receiver') {
  const sink = new FileReplicaSink(join(dir as string, 'replica'));
  const receiver = new Receiver({ identity: recovery, sink, allowedSenders: [primary.fingerprint], port });
  await receiver.listen();
  process.stdout.write('ready\n');
} else {
  const source = await openSource(dir as string, PROCESS_DISK_SIZE, 64 << 20);
  const sender = new Sender({ identity: primary, backoffMinMs: 20, backoffMaxMs: 100, batchBytes: 64 << 10 });
  sender.addDisk({
    diskKey: PROCESS_DISK_KEY,
    source,
    receiver: { host: '127.0.0.1', port, fingerprint: recovery.fingerprint },
    statePath: join(dir as string, 'sender-state.json'),
  });
  if (mode === 'sender') {
    const rnd = new SeededRandom(Number(seedText));
    process.stdout.write('ready\n');
    for (let i = 0; ; i++) {
      const length = rnd.int(1, 16) * 4096;
      const offset = rnd.int(0, (PROCESS_DISK_SIZE - length) / 4096) * 4096;
      if (rnd.next() < 0.85)
        await source.write(offset, Buffer.alloc(length, rnd.int(1, 255)), { fua: false });
      else await source.trim(offset, length, { fua: false });
      if (i % 20 === 19) await source.flush();
      if (i % 4 === 0) await new Promise((r) => setTimeout(r, 1));
    }
  } else {
    await source.flush();
    await waitFor(
      'catch-up',
      () => {
        const st = sender.status(PROCESS_DISK_KEY);
        return (
          st.state === 'streaming' &&
          st.lastAckedSeq >= source.journal.status.writtenSeq &&
          !st.resyncRequired
        );
      },
      30_000,
    );
    const status = sender.status(PROCESS_DISK_KEY);
    await sender.close();
    await source.close();
    process.stdout.write(`${JSON.stringify(status)}\n`);
  }
}
