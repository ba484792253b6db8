/**
 * Child process for the replica crash test: appends a seeded history to a
 * replica store in random batches and merges expired points as it goes,
 * printing `ack SEQ` after each append resolves, until it is killed or done.
 * Usage: node crash-appender.fixture.ts DIR SEED
 */

import { ReplicaStore } from '../replica/replica-store.ts';
import { CRASH_DISK, CRASH_RETENTION, crashHistory } from './replica-test-model.ts';
import { SeededRandom } from './seeded-random.ts';

const [dir, seedText] = process.argv.slice(2);
const seed = Number(seedText);
const history = crashHistory(seed);
const store = await ReplicaStore.open(dir as string, {
  segmentBytes: 128 << 10,
  mergeStepBytes: 256 << 10,
  retention: CRASH_RETENTION,
});
await store.ensureDisk(CRASH_DISK.key, CRASH_DISK.size);
if ((await store.durableSequence(CRASH_DISK.key)) < 0) {
  await store.beginSync(CRASH_DISK.key, { id: 'initial', kind: 'initial', fromSeq: 1, regions: null });
}
if (store.diskStatus(CRASH_DISK.key).syncing !== null) await store.completeSync(CRASH_DISK.key, 'initial', 1);
let durable = await store.durableSequence(CRASH_DISK.key);
const rnd = new SeededRandom(seed * 31 + durable);
process.stdout.write(`ready ${durable}\n`);
let batches = 0;
while (durable < (history.at(-1)?.seq ?? 0)) {
  const from = durable; // history[i].seq === i + 1
  durable = await store.append(CRASH_DISK.key, history.slice(from, from + rnd.int(1, 30)));
  process.stdout.write(`ack ${durable}\n`);
  if (++batches % 4 === 0) {
    const base = await store.runRetention(CRASH_DISK.key, history[durable - 1]?.timeMs);
    process.stdout.write(`merged ${base[CRASH_DISK.key]}\n`);
  }
}
process.stdout.write('done\n');
await store.close();
