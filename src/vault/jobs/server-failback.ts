import { isoNow } from '../../clock/index.ts';
import type { Disk } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { DiskRegion, ServerFailbackMedia } from '../../host/host-services.ts';
import { refuseRunningServer, type ServerBmcCall, serverBmcOf, serverLinkWords } from '../servers/index.ts';
import { fenceAlertKey } from '../source-fence.ts';
import { connectedHost, type LifecycleStepContext, pollUntil } from './lifecycle-job.ts';

/**
 * Failback of a physical server onto the server itself (failback-jobs.ts
 * calls these for kind server). Its "original disks" are the staging images
 * the primary host keeps for its NBD legs: reprotect adopts them as the base
 * of the reverse replica, failback consolidates the recovery copy into them
 * and learns which ranges that wrote; the server then boots Haven's recovery
 * environment once, which copies those ranges from its legs' exports onto
 * its own disks, and reboots into its own system, whose agent re-adds the
 * stale legs (md's bitmap resends what the copy wrote).
 */

/** How long a recovery environment's build may take (the first fetches a kernel and packages). */
const MEDIA_BUILD_MS = 15 * 60_000;

/** Reprotect, before anything is written: the server is off as far as its host sees, and stays fenced. */
export async function leaveServerOff(ctx: LifecycleStepContext): Promise<void> {
  const hostId = ctx.machine.primaryHostId;
  await connectedHost(ctx, hostId);
  const link = ctx.host(hostId).servers;
  refuseRunningServer(ctx.machine, await link.status({ machineId: ctx.machine.id }));
  // Its legs' images are about to become the reverse replica: nothing of the server may reach them.
  await link.fence({ machineId: ctx.machine.id, reason: `reprotect by job ${ctx.job.id}` });
  await ctx.host(hostId).replication.stop({ machineId: ctx.machine.id });
  // Where the host keeps each leg's staging image, as it says (kept on the machine: adopting detaches the leg).
  const exports = await ctx.host(hostId).disk.list({ machineId: ctx.machine.id });
  const disks = ctx.machine.disks.map((d) => {
    const staging = exports.find((e) => e.diskId === d.id)?.stagingImage ?? d.serverStagingImage ?? null;
    if (!staging) {
      throw new HavenError(
        'not_available',
        `host of physical server '${ctx.machine.name}' does not say where it keeps the staging image of disk ${d.id} ` +
          '(its leg is not attached there, and no earlier reprotect recorded it); enable replication of the server again',
        { machineId: ctx.machine.id, diskId: d.id },
      );
    }
    return { ...d, serverStagingImage: staging };
  });
  await ctx.save({ disks });
  ctx.progress(
    100,
    `server '${ctx.machine.name}' is off and fenced; staging images ${disks.map((d) => d.serverStagingImage).join(', ')}`,
  );
}

/**
 * Reprotect to an alternate host: the machine is a VM from now on, on disks
 * of its own there. Its primary host forgets the server (its certificate,
 * legs and staging images) and the vault its BMC password. A host that is
 * away keeps them, and keeps the server fenced: the output says so.
 */
export async function forgetServer(ctx: LifecycleStepContext): Promise<void> {
  const hostId = ctx.machine.primaryHostId;
  await ctx.vault.store.serverBmcPasswords.delete(ctx.machine.id);
  if (!ctx.vault.hosts.isConnected(hostId)) {
    const kept = `its primary host is not connected: it keeps the server's staging images and keeps the server fenced`;
    await ctx.output({ serverForgotten: `no: ${kept}` });
    ctx.progress(100, `server '${ctx.machine.name}' is a VM from now on; ${kept}`);
    return;
  }
  await ctx.host(hostId).servers.forget({ machineId: ctx.machine.id });
  await ctx.output({
    serverForgotten: 'yes: its certificate, legs and staging images are gone at its primary host',
  });
  ctx.progress(100, `server '${ctx.machine.name}' is a VM from now on; its primary host forgot the server`);
}

/** The image reprotect adopts and failback restores: for a server, its leg's staging image. */
export function stagingImageOf(machineName: string, disk: Disk): string {
  if (!disk.serverStagingImage) {
    throw new HavenError(
      'conflict',
      `physical server '${machineName}': disk ${disk.id} has no staging image recorded; reprotect it first`,
      { diskId: disk.id },
    );
  }
  return disk.serverStagingImage;
}

interface WrittenRegions {
  /** Per disk: what consolidate wrote into its staging image, or null when that was not known (the whole disk). */
  regions: Record<string, DiskRegion[] | null>;
}

/**
 * Failback: the reverse replica goes into the staging images in place,
 * answering the ranges it wrote (kept in the job's output, so a retry that
 * finds them consolidated already still knows); the legs are attached again
 * with a fresh journal, for reprotect forward.
 */
export async function restoreStagingImages(ctx: LifecycleStepContext): Promise<void> {
  const primary = ctx.host(ctx.machine.primaryHostId);
  const consolidated = await primary.replica.consolidate({
    machineId: ctx.machine.id,
    restore: ctx.machine.disks.map((d) => ({
      diskId: d.id,
      imagePath: stagingImageOf(ctx.machine.name, d),
      keepMdMetadata: true,
    })),
  });
  const job = await ctx.vault.store.jobs.get(ctx.job.id);
  const earlier = (job?.output.serverFailback as WrittenRegions | undefined)?.regions ?? {};
  const regions: WrittenRegions['regions'] = {};
  for (const d of ctx.machine.disks) {
    const answered = consolidated.disks.find((c) => c.diskId === d.id)?.writtenRegions ?? null;
    regions[d.id] = answered ?? earlier[d.id] ?? null;
  }
  await ctx.output({ serverFailback: { regions } satisfies WrittenRegions });
  const disks = [];
  for (const d of ctx.machine.disks) {
    const exported = await primary.disk.attach({
      machineId: ctx.machine.id,
      diskId: d.id,
      source: d.serverDevice ?? d.source,
      sizeBytes: d.sizeBytes,
      serverLeg: true,
      resetJournal: true,
    });
    disks.push({
      ...d,
      nbdUri: exported.nbdUri,
      serverStagingImage: exported.stagingImage ?? d.serverStagingImage,
    });
  }
  await ctx.save({ disks });
  const bytes = Object.values(regions).reduce(
    (sum, r) => sum + (r === null ? 0 : r.reduce((n, x) => n + x.length, 0)),
    0,
  );
  ctx.progress(100, `the staging images hold the recovery site's data; ${bytes} bytes written into them`);
}

/**
 * Builds the recovery environment on the primary host for this failback (the
 * ranges consolidate wrote, the whole disk where that is unknown), then lets
 * the server's certificate in again: the environment and then the server's
 * own system connect with it.
 */
export async function prepareServerFailback(ctx: LifecycleStepContext): Promise<void> {
  const hostId = ctx.machine.primaryHostId;
  await connectedHost(ctx, hostId);
  const job = await ctx.vault.store.jobs.get(ctx.job.id);
  const written = (job?.output.serverFailback as WrittenRegions | undefined)?.regions ?? {};
  const link = ctx.host(hostId).servers;
  ctx.progress(10, 'building the recovery environment on the primary host');
  const media = await link.failbackMedia({
    machineId: ctx.machine.id,
    disks: ctx.machine.disks.map((d) => ({
      diskId: d.id,
      device: d.serverDevice ?? d.source,
      ranges: written[d.id] ?? [{ offset: 0, length: d.sizeBytes }],
    })),
    timeoutMs: MEDIA_BUILD_MS,
  });
  await link.unfence({ machineId: ctx.machine.id });
  // Back at its primary: the source fence of the failover no longer applies.
  await ctx.vault.store.machines.recordSourceFence(ctx.machine.id, null);
  await ctx.vault.store.alerts.clear(fenceAlertKey(ctx.machine.id), isoNow(ctx.vault.clock));
  await ctx.output({ serverFailbackMedia: media });
  ctx.progress(
    100,
    `recovery environment in ${media.dir} (${media.rangeBytes} bytes to copy onto the server)`,
  );
}

/** What the operator must do, in words (the job's progress while it waits). */
function bootInstructions(name: string, media: ServerFailbackMedia): string {
  return (
    `boot server '${name}' once from Haven's recovery environment: network boot from ${media.dir} ` +
    `(iPXE script ${media.ipxeScript}, served by TFTP or HTTP with vmlinuz and initramfs.gz beside it), ` +
    `or a boot medium holding vmlinuz and initramfs.gz at its root with ${media.syslinuxConfig}. ` +
    'It copies what diverged onto the server’s disks and reboots it into its own system'
  );
}

/**
 * With a BMC, Haven boots the server itself: the next boot from the network
 * (the recovery environment, served by network boot), then power on. Not a
 * server that is on already (something runs on it: Haven does not cut it).
 */
async function bootRecoveryByBmc(ctx: LifecycleStepContext, bmc: ServerBmcCall): Promise<string> {
  if ((await bmc('status')) === 'on') {
    return 'its BMC reports it powered on already, so Haven did not power it on: power it off, Haven boots it';
  }
  await bmc('boot-pxe');
  const power = await bmc('power-on');
  const said = `next boot set to the network and powered on through its BMC (it reports it ${power})`;
  await ctx.output({ bmcBoot: said });
  return said;
}

/**
 * Waits for the server: its recovery environment reports the copy, then the
 * server's own agent reports every array whole and every leg in sync again.
 * With a BMC, Haven boots the environment (next boot from the network, power
 * on) and, once it reports the copy done, sets the next boot back to disk
 * (powering it on if the environment powered it off) so it boots its own
 * system.
 * A server whose own system reports before the environment wrote the
 * failback is refused (its disks lack the recovery site's data). No time
 * limit: a person boots the server (cancel the job to stop waiting).
 */
export async function awaitServerBack(ctx: LifecycleStepContext): Promise<void> {
  const job = await ctx.vault.store.jobs.get(ctx.job.id);
  const media = job?.output.serverFailbackMedia as ServerFailbackMedia | undefined;
  if (!media) throw new HavenError('internal', 'the recovery environment was not built');
  const link = ctx.host(ctx.machine.primaryHostId).servers;
  const bmc = serverBmcOf(ctx.vault, ctx.machine, ctx.machine.primaryHostId);
  const first = await link.status({ machineId: ctx.machine.id });
  const booted = bmc && !first.failback && !first.agent ? await bootRecoveryByBmc(ctx, bmc) : null;
  const instructions = booted
    ? `server '${ctx.machine.name}': ${booted}; waiting for Haven's recovery environment (network boot from ${media.dir})`
    : bootInstructions(ctx.machine.name, media);
  let ownBootSet = false;
  const back = await pollUntil(
    ctx,
    async () => {
      const status = await link.status({ machineId: ctx.machine.id });
      const failback = status.failback ?? null;
      const ownAgent = status.agent !== null && !status.agent.failback;
      if (failback === null) {
        if (ownAgent) {
          throw new HavenError(
            'conflict',
            `physical server '${ctx.machine.name}' booted its own system before Haven's recovery environment wrote the failback: ` +
              'its disks lack the recovery site’s data. Power it off now, then boot it once from the recovery environment ' +
              `(${media.dir}) and retry this job`,
            { machineId: ctx.machine.id },
          );
        }
        ctx.progress(5, `waiting: ${instructions}`);
        return undefined;
      }
      if (failback.phase === 'failed') {
        throw new HavenError(
          'conflict',
          `the recovery environment on server '${ctx.machine.name}' failed: ${failback.problem ?? 'no reason given'}. ` +
            'The server powered off with a partial copy; fix that, boot it from the recovery environment again ' +
            'and retry this job (the copy is simply redone)',
          { machineId: ctx.machine.id },
        );
      }
      if (failback.phase === 'copying') {
        const percent = failback.totalBytes > 0 ? (100 * failback.copiedBytes) / failback.totalBytes : 0;
        ctx.progress(
          10 + percent / 2,
          `the recovery environment copies onto the server: ${failback.copiedBytes} of ${failback.totalBytes} bytes`,
        );
        return undefined;
      }
      if (!ownAgent && bmc && !ownBootSet) {
        ownBootSet = true;
        await bmc('boot-disk');
        if ((await bmc('status')) === 'off') await bmc('power-on');
        await ctx.output({ bmcOwnBoot: 'next boot set back to disk through its BMC' });
      }
      if (!ownAgent) {
        ctx.progress(
          60,
          `the recovery environment wrote ${failback.copiedBytes} bytes in ${failback.elapsedMs} ms; waiting for the server's own system and its agent`,
        );
        return undefined;
      }
      // The server's own agent: its stale legs come back through md's bitmap.
      if (status.state !== 'in-sync') {
        ctx.progress(80, `the server runs its own system again: ${serverLinkWords(status)}`);
        return undefined;
      }
      return failback;
    },
    {
      what: `server '${ctx.machine.name}' to boot the recovery environment and come back in sync`,
      intervalMs: 1000,
    },
  );
  await ctx.output({
    serverBack: { copiedBytes: back.copiedBytes, copyMs: back.elapsedMs, at: isoNow(ctx.vault.clock) },
  });
  ctx.progress(100, `server '${ctx.machine.name}' runs its own system again, every leg in sync`);
}

/** Reprotect forward: until the server's link is in sync again (its agent and every leg), in words. */
export async function legsInSync(ctx: LifecycleStepContext): Promise<void> {
  const link = ctx.host(ctx.machine.primaryHostId).servers;
  await pollUntil(
    ctx,
    async () => {
      const status = await link.status({ machineId: ctx.machine.id });
      ctx.progress(status.state === 'in-sync' ? 100 : 90, serverLinkWords(status));
      return status.state === 'in-sync' ? status : undefined;
    },
    { what: `the legs of server '${ctx.machine.name}' to be in sync`, intervalMs: 500 },
  );
}
