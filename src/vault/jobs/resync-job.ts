import { HavenError } from '../../errors/index.ts';
import type { ReplicationStatus, ResyncRequested } from '../../host/host-services.ts';
import type { VaultContext } from '../vault-context.ts';
import { copyProgress, mib } from './copy-progress.ts';
import type { VaultJobDefinition } from './job-inputs.ts';
import {
  type LifecycleStepContext,
  lifecycleJob,
  pollUntil,
  ReplicationErrorWatch,
} from './lifecycle-job.ts';

const KIND_TITLE = { bitmap: 'dirty regions', hash: 'hash compare', full: 'full copy' } as const;

/** A resync is done when, for every disk, the same sender answered its request. */
function unanswered(requested: ResyncRequested, status: ReplicationStatus): 'done' | 'pending' | 'lost' {
  let pending = false;
  for (const disk of requested.disks) {
    const answer = status.resyncRequests?.find((r) => r.diskId === disk.diskId);
    // A restarted sender forgot the request (it finishes an interrupted sync on its own, but not ours).
    if (answer === undefined || answer.senderId !== disk.senderId) return 'lost';
    if (answer.done < disk.request) pending = true;
  }
  return pending ? 'pending' : 'done';
}

/** Asks the replicating host for a resync of every disk; the answer says which kind each gets. */
async function requestResync(ctx: LifecycleStepContext<'resync'>): Promise<ResyncRequested> {
  const requested = await ctx
    .host(ctx.machine.activeHostId)
    .replication.resync({ machineId: ctx.machine.id, full: ctx.input.full });
  await ctx.output({
    resync: requested.disks.map((d) => ({ diskId: d.diskId, kind: d.kind })),
  });
  return requested;
}

/**
 * Resync (SPEC §2): compare and resend what diverged between the machine's
 * disks and its replica while the machine keeps running. Each disk gets the
 * cheapest resync that is sure to find every difference: the regions of the
 * journal's dirty bitmap when it overflowed into it, else a hash compare of
 * the whole disk; `full` copies whole disks. The machine shows
 * 'resynchronizing' until every disk's copy is acknowledged by the replica.
 */
export function resyncJob(vault: () => VaultContext): VaultJobDefinition<'resync'> {
  return lifecycleJob(vault, {
    operation: 'resync',
    steps: () => [
      {
        name: 'resynchronize',
        title: 'Resynchronise the disks with the replica',
        retrySafe: true,
        weight: 9,
        run: async (ctx) => {
          const source = ctx.host(ctx.machine.activeHostId);
          let requested = await requestResync(ctx);
          const broken = new ReplicationErrorWatch(`the resync of machine '${ctx.machine.name}'`);
          let shown = 0;
          const status = await pollUntil(
            ctx,
            async () => {
              const status = await source.replication.status({ machineId: ctx.machine.id });
              if (status.state === 'stopped') {
                throw new HavenError(
                  'conflict',
                  `replication of machine '${ctx.machine.name}' stopped during the resync; run resync again`,
                  { machineId: ctx.machine.id, machineName: ctx.machine.name },
                );
              }
              broken.check(status);
              const answer = unanswered(requested, status);
              if (answer === 'done') return status;
              if (answer === 'lost') {
                requested = await requestResync(ctx);
                return undefined;
              }
              const kinds = [...new Set(requested.disks.map((d) => KIND_TITLE[d.kind]))].join(', ');
              const copy = copyProgress(status);
              shown = Math.max(shown, copy.percent);
              ctx.progress(
                shown,
                `${kinds}: ${copy.text}` +
                  (status.state === 'error' ? ` (replication error: ${status.lastError})` : ''),
              );
              return undefined;
            },
            { what: `the resync of machine '${ctx.machine.name}'`, intervalMs: 250 },
          );
          const syncs = (status.syncs ?? []).filter((s) =>
            requested.disks.some((d) => d.diskId === s.diskId),
          );
          await ctx.output({
            resync: syncs.map((s) => ({
              diskId: s.diskId,
              kind: s.kind,
              diskBytes: s.diskBytes,
              copiedBytes: s.regionBytes,
              blocksCompared: s.blocksCompared,
              blocksDiffering: s.blocksDiffering,
            })),
          });
          const copied = syncs.reduce((n, s) => n + s.regionBytes, 0);
          ctx.progress(100, `${mib(copied)} MiB copied to the replica`);
        },
      },
    ],
  });
}
