/**
 * Commit of a machine recovered into a libvirt domain: its disks move, live,
 * off the point-in-time view onto local qcow2 images at the recovery host
 * (blockcopy, then the switch once the copy mirrors every write), so the
 * machine leaves Haven's read path; only then is the view closed. The
 * built-in QEMU driver's machines keep reading their view.
 */
import { join } from 'node:path';
import type { RunningCopy } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { DiskMove } from '../../host/host-services.ts';
import { mib } from './copy-progress.ts';
import { type LifecycleStep, type LifecycleStepContext, pollUntil } from './lifecycle-job.ts';

type LocalImages = NonNullable<RunningCopy['localImages']>;

function failoverCopy(ctx: LifecycleStepContext): RunningCopy {
  const copy = ctx.machine.runtime.failover;
  if (!copy) {
    throw new HavenError('conflict', `machine '${ctx.machine.name}' has no failed-over copy to commit`, {
      machineId: ctx.machine.id,
      state: ctx.machine.state,
    });
  }
  return copy;
}

/** The images chosen by an earlier run of the step (kept in the job output so a retry continues the same copies). */
async function chosenImages(ctx: LifecycleStepContext, copy: RunningCopy): Promise<LocalImages | undefined> {
  if (copy.localImages) return copy.localImages;
  const job = await ctx.vault.store.jobs.get(ctx.job.id);
  return job?.output.localImages as LocalImages | undefined;
}

export function moveOffViewStep(): LifecycleStep {
  return {
    name: 'move-disks-off-view',
    title: "Move the recovered machine's disks off the view onto local images (live)",
    retrySafe: true,
    run: async (ctx) => {
      const copy = failoverCopy(ctx);
      const host = await ctx.vault.store.hosts.get(copy.hostId);
      if (!host?.capabilities.includes('hypervisor:libvirt')) {
        await ctx.output({ disks: 'on the view: the built-in QEMU driver keeps its machines there' });
        ctx.progress(100, 'built-in QEMU driver: the machine keeps reading its view');
        return;
      }
      let images = await chosenImages(ctx, copy);
      if (!images) {
        const folder = host.storageFolders[0];
        if (!folder) {
          throw new HavenError(
            'conflict',
            `machine '${ctx.machine.name}': host '${host.name}' reports no storage folder for the local images (haven host --storage DIR); the machine still runs on its view`,
            { machineId: ctx.machine.id, hostId: host.id },
          );
        }
        // The job id in the name: a failed earlier commit's partial image is never reused or overwritten.
        images = copy.disks.map((d) => ({
          diskId: d.diskId,
          image: join(folder, `${copy.vmName}-${d.diskId}-${ctx.job.id.slice(0, 8)}.qcow2`),
        }));
        await ctx.output({ localImages: images });
      }
      const hypervisor = ctx.host(copy.hostId).hypervisor;
      const moved: string[] = [];
      let copiedBytes = 0;
      for (const [index, { diskId, image }] of images.entries()) {
        let done: DiskMove;
        try {
          done = await pollUntil(
            ctx,
            async () => {
              const move = await hypervisor.moveDiskToImage({ name: copy.vmName, diskId, image });
              const fraction = move.totalBytes > 0 ? move.copiedBytes / move.totalBytes : 0;
              ctx.progress(
                Math.min(99, Math.floor((100 * (index + fraction)) / images.length)),
                `disk ${diskId}: ${mib(move.copiedBytes)} of ${mib(move.totalBytes)} MiB copied${move.state === 'moved' ? ', switched to the local image' : ''}`,
              );
              return move.state === 'moved' ? move : undefined;
            },
            { what: `disk ${diskId} of '${copy.vmName}' to be copied to ${image}`, intervalMs: 500 },
          );
        } catch (error) {
          if (ctx.signal.aborted) throw error;
          const why = error instanceof Error ? error.message : String(error);
          throw new HavenError(
            error instanceof HavenError ? error.code : 'internal',
            `machine '${ctx.machine.name}': moving disk ${diskId} off the view to '${image}' failed: ${why}. ` +
              `The recovered machine '${copy.vmName}' still runs, disk ${diskId} on view ${copy.viewId}` +
              `${moved.length > 0 ? ` (disks ${moved.join(', ')} already on local images)` : ''}; nothing was committed`,
            { machineId: ctx.machine.id, diskId, image, viewId: copy.viewId },
          );
        }
        moved.push(diskId);
        copiedBytes += done.copiedBytes;
      }
      await ctx.save({ runtime: { ...ctx.machine.runtime, failover: { ...copy, localImages: images } } });
      await ctx.output({ disks: `on local images: ${images.map((i) => i.image).join(', ')}` });
      ctx.progress(100, `${images.length} disk(s), ${mib(copiedBytes)} MiB copied, on local images`);
    },
  };
}

/** After the commit: the view of a machine whose disks moved is closed (checked moved first: never a disk still on it). */
export function closeMovedViewStep(): LifecycleStep {
  return {
    name: 'close-view',
    title: 'Close the view the machine no longer reads',
    retrySafe: true,
    run: async (ctx) => {
      const copy = failoverCopy(ctx);
      if (!copy.localImages || copy.viewClosed) {
        ctx.progress(100, copy.viewClosed ? 'view already closed' : 'the machine still reads its view');
        return;
      }
      // Asked again right before closing: every moved disk reads its image, as libvirt reports it now.
      const { domains } = await ctx.host(copy.hostId).hypervisor.inventory({ name: copy.vmName });
      const sources = (domains[0]?.disks ?? []).map((d) => (d.source.type === 'file' ? d.source.path : null));
      const missing = copy.localImages.filter(({ image }) => !sources.includes(image));
      if (missing.length > 0) {
        throw new HavenError(
          'conflict',
          `machine '${ctx.machine.name}': '${copy.vmName}' does not read ${missing.map((m) => `'${m.image}'`).join(', ')}; view ${copy.viewId} stays open`,
          { machineId: ctx.machine.id, images: missing },
        );
      }
      // Its writes are in the local images now; nothing reads the view's overlay any more.
      await ctx.host(copy.hostId).replica.closeView({ viewId: copy.viewId, discardWrites: true });
      await ctx.save({ runtime: { ...ctx.machine.runtime, failover: { ...copy, viewClosed: true } } });
      await ctx.output({ view: `view ${copy.viewId} closed: the machine reads its local images only` });
      ctx.progress(100, `view ${copy.viewId} closed`);
    },
  };
}
