/**
 * Child process for the consolidation crash test: opens a prepared replica
 * store and runs one consolidation (`restore`: the base moves out to an
 * image; `view`: a writable view is merged into the base), printing `start`
 * first and `done` at the end, unless it is killed in between.
 * Usage: node consolidate-crash.fixture.ts DIR restore|view TARGET
 */
import { ReplicaStore } from '../replica/replica-store.ts';

const [dir, mode, target] = process.argv.slice(2) as [string, string, string];
const store = await ReplicaStore.open(dir, { mergeStepBytes: 64 << 10 });
process.stdout.write('start\n');
if (mode === 'restore') await store.restoreImage('m/d', target);
else await store.consolidateView('m/d', target, 0);
process.stdout.write('done\n');
await store.close();
