import type { ReplicationSource } from './replicated-disk.ts';
import { flushForCopy, type SyncPlan } from './sync-plan.ts';

/** Initial sync and full resync: copy the whole disk. */
export async function planFullCopy(source: ReplicationSource): Promise<SyncPlan> {
  return { fromSeq: await flushForCopy(source), regions: null };
}
