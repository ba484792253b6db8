import type { ReplicationSource } from './replicated-disk.ts';
import type { SenderLink } from './sender-link.ts';
import type { SyncPlan } from './sync-plan.ts';

export type BitmapResyncStart =
  | { readonly outcome: 'copy'; readonly plan: SyncPlan }
  /** An earlier run finished the copy and cleared the bitmap, but the state file did not say so. */
  | { readonly outcome: 'already-synced' }
  /** The receiver is behind the journal's oldest record: only comparing hashes can find what differs. */
  | { readonly outcome: 'journal-trimmed' };

/**
 * Resync after a journal overflow: once everything journaled before the
 * overflow is acknowledged, copy the regions the dirty bitmap marked, then
 * clear them from it.
 */
export async function planBitmapResync(
  link: SenderLink,
  source: ReplicationSource,
): Promise<BitmapResyncStart> {
  const journal = source.journal;
  await link.drained();
  if (!journal.resyncRequired) return { outcome: 'already-synced' };
  const resync = await source.beginResync();
  const fromSeq = link.window.ackedSeq + 1;
  if (fromSeq < journal.status.firstSeq) return { outcome: 'journal-trimmed' };
  return {
    outcome: 'copy',
    plan: { fromSeq, regions: resync.regions, onCopied: () => journal.completeResync(resync) },
  };
}
