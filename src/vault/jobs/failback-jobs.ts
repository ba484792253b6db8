import { vmNameOf } from '../../domain/index.ts';
import type { Machine } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { DiskRegion, ReplicationStatus } from '../../host/host-services.ts';
import type { VaultContext } from '../vault-context.ts';
import type { LifecycleJobInput, VaultJobDefinition } from './job-inputs.ts';
import {
  connectedHost,
  type LifecycleStep,
  type LifecycleStepContext,
  lifecycleJob,
  pollUntil,
  ReplicationErrorWatch,
  replicationTarget,
} from './lifecycle-job.ts';
import * as ownImage from './own-image-failback.ts';
import * as onServer from './server-failback.ts';

/**
 * Reprotect, failback, complete failover and the commit after failback
 * (SPEC §2 steps 6–8). The machine fails back to its original disks: the
 * primary host adopts its image as the base of a reverse replica, and the
 * recovery host sends only what diverged — the regions the primary wrote
 * after the failover point (known from the replica's journal) and the
 * recovery machine's own writes (its view's journal) — never the whole disk.
 * A machine on its own image (an imported libvirt domain) takes the same
 * steps through QEMU's mirror instead (own-image-failback.ts).
 */

function failoverCopy(machine: Machine) {
  const copy = machine.runtime.failover;
  if (!copy)
    throw new HavenError('conflict', `machine '${machine.name}' has no machine running at the recovery site`);
  return copy;
}

/** Waits until the reverse (or forward) stream has nothing left to send; returns the final status. */
function drained(ctx: LifecycleStepContext, hostId: string, what: string): Promise<ReplicationStatus> {
  const broken = new ReplicationErrorWatch(what);
  return pollUntil(
    ctx,
    async () => {
      const status = await ctx.host(hostId).replication.status({ machineId: ctx.machine.id });
      broken.check(status);
      ctx.progress(
        status.queuedBytes === 0 ? 100 : 50,
        `${status.state}: ${status.queuedBytes} bytes to send, ${status.sentBytes} sent`,
      );
      return status.state === 'streaming' && status.queuedBytes === 0 ? status : undefined;
    },
    { what, intervalMs: 250 },
  );
}

interface AlternateLocation {
  hostId: string;
  disks: Machine['disks'];
}

/** Where reprotect sends the machine: its original disks, or new ones at an alternate location. */
async function reverseTarget(
  ctx: LifecycleStepContext,
): Promise<{ hostId: string; disks: Machine['disks']; alternate: boolean }> {
  const job = await ctx.vault.store.jobs.get(ctx.job.id);
  const alternate = job?.output.alternate as AlternateLocation | undefined;
  return alternate
    ? { hostId: alternate.hostId, disks: alternate.disks, alternate: true }
    : { hostId: ctx.machine.primaryHostId, disks: ctx.machine.disks, alternate: false };
}

/** Steps that reverse replication: recovery machine's view → the primary's original image. */
function reverseSteps(input: LifecycleJobInput<'reprotect'>): LifecycleStep<'reprotect'>[] {
  return [
    {
      name: 'check-primary-off',
      title: input.alternateHostId
        ? 'Check the alternate location'
        : 'Check that the primary machine is off (it stays off during reprotect)',
      retrySafe: true,
      run: async (ctx) => {
        if (input.alternateHostId) {
          const id = input.alternateHostId;
          const host = (await ctx.vault.store.hosts.get(id)) ?? (await ctx.vault.store.hosts.getByName(id));
          if (!host)
            throw new HavenError('bad_request', `alternateHostId: host '${id}' does not exist`, {
              field: 'alternateHostId',
            });
          if (host.id === failoverCopy(ctx.machine).hostId) {
            throw new HavenError(
              'bad_request',
              `alternateHostId: '${host.name}' is where the machine runs now`,
              {
                field: 'alternateHostId',
              },
            );
          }
          await connectedHost(ctx, host.id);
          const info = await ctx.host(host.id).host.info();
          // A new machine: new disks under the alternate host's data directory, filled by a full copy.
          const disks = ctx.machine.disks.map((d) => ({
            ...d,
            source: `${info.dataDir}/machines/${ctx.machine.id}/${d.id}.img`,
            nbdUri: null,
          }));
          await ctx.output({ alternate: { hostId: host.id, disks } });
          return;
        }
        if (ctx.machine.server) return onServer.leaveServerOff(ctx);
        await connectedHost(ctx, ctx.machine.primaryHostId);
        const status = await ctx
          .host(ctx.machine.primaryHostId)
          .hypervisor.status({ name: vmNameOf(ctx.machine) });
        if (status.state === 'running' || status.state === 'paused') {
          throw new HavenError(
            'operation_not_allowed',
            `The primary machine '${vmNameOf(ctx.machine)}' is ${status.state} at the primary site; reprotect needs it off. ` +
              'Shut it down (its data is about to be replaced by the recovery site’s), then reprotect again.',
            { machineId: ctx.machine.id, machineName: ctx.machine.name, primaryState: status.state },
          );
        }
        if (ctx.machine.importedFrom) {
          await ownImage.leaveOriginalOff(ctx, input.alternateHostId);
          return;
        }
        // Forward replication stopped at failover; make sure (a source that was unreachable then may be back).
        await ctx.host(ctx.machine.primaryHostId).replication.stop({ machineId: ctx.machine.id });
      },
    },
    {
      name: 'adopt-original-disks',
      title: 'Make the original disks the base of the reverse replica (no copy over the network)',
      retrySafe: true,
      run: async (ctx) => {
        if (ctx.machine.importedFrom) return ownImage.seedFromOriginal(ctx);
        const copy = failoverCopy(ctx.machine);
        const view = await ctx.host(copy.hostId).replica.viewInfo({ viewId: copy.viewId });
        const extra: Record<string, DiskRegion[]> = {};
        const target = await reverseTarget(ctx);
        let unknown = target.alternate;
        for (const disk of target.disks) {
          const seen = view.disks.find((d) => d.diskId === disk.id);
          const firstSeq = seen?.status?.journal.firstSeq ?? 1;
          if (target.alternate) {
            // A new, empty disk at the alternate location (the disk service creates it), then adopted like an original.
            const services = ctx.host(target.hostId);
            // The lost original's export may still be there (same host): it names the same disk, so it goes.
            const attached = (await services.disk.list({ machineId: ctx.machine.id })).find(
              (d) => d.diskId === disk.id,
            );
            if (attached && attached.source !== disk.source) {
              await services.disk.detach({ machineId: ctx.machine.id, diskId: disk.id });
            }
            await services.disk.attach({
              machineId: ctx.machine.id,
              diskId: disk.id,
              source: disk.source,
              sizeBytes: disk.sizeBytes,
            });
            await services.disk.detach({ machineId: ctx.machine.id, diskId: disk.id });
          }
          const adopted = await ctx.host(target.hostId).replica.adoptImage({
            machineId: ctx.machine.id,
            diskId: disk.id,
            // A server's original disk, as far as Haven holds it, is its leg's staging image.
            imagePath:
              ctx.machine.server && !target.alternate
                ? onServer.stagingImageOf(ctx.machine.name, disk)
                : disk.source,
            sizeBytes: disk.sizeBytes,
            durableSeq: firstSeq - 1,
            ...(ctx.machine.server && !target.alternate ? { keepMdMetadata: true } : {}),
          });
          if (adopted.unsentRegions === null || target.alternate) unknown = true;
          else extra[disk.id] = adopted.unsentRegions;
        }
        await ctx.output({
          reprotect: { extraRegions: extra, fullResync: unknown || input.fullResync === true },
        });
      },
    },
    {
      name: 'start-reverse-replication',
      title: 'Start replication from the recovery site back to the primary',
      retrySafe: true,
      run: async (ctx) => {
        if (ctx.machine.importedFrom) return ownImage.protectRecovered(ctx);
        const copy = failoverCopy(ctx.machine);
        const primary = await connectedHost(ctx, (await reverseTarget(ctx)).hostId);
        const recovery = await connectedHost(ctx, copy.hostId);
        await ctx.host(primary.id).replication.allowSender({ fingerprint: recovery.replicationFingerprint! });
        const job = await ctx.vault.store.jobs.get(ctx.job.id);
        const plan = job?.output.reprotect as {
          extraRegions: Record<string, DiskRegion[]>;
          fullResync: boolean;
        };
        await ctx.host(recovery.id).replication.start({
          machineId: ctx.machine.id,
          diskIds: ctx.machine.disks.map((d) => d.id),
          target: replicationTarget(primary),
          mode: plan.fullResync ? 'full' : 'delta',
          source: { viewId: copy.viewId, extraRegions: plan.extraRegions },
        });
      },
    },
    {
      name: 'resynchronize',
      title: 'Send the blocks that diverged',
      retrySafe: true,
      weight: 4,
      run: async (ctx) => {
        if (ctx.machine.importedFrom) return ownImage.reverseFirstPoint(ctx);
        const copy = failoverCopy(ctx.machine);
        const status = await drained(ctx, copy.hostId, 'the reverse resync');
        const view = await ctx.host(copy.hostId).replica.viewInfo({ viewId: copy.viewId });
        const diverged = view.disks.reduce((sum, d) => sum + (d.status?.divergedBytes ?? 0), 0);
        const disk = ctx.machine.disks.reduce((sum, d) => sum + d.sizeBytes, 0);
        await ctx.output({
          reprotectSent: { sentBytes: status.sentBytes, divergedBytes: diverged, diskBytes: disk },
        });
        // A server replicated to an alternate host is a VM there from now on.
        if (ctx.machine.server && input.alternateHostId) await onServer.forgetServer(ctx);
      },
    },
  ];
}

/** Reprotect forward after failback: the recovery replica follows the primary's fresh journal. */
function forwardSteps(): LifecycleStep[] {
  return [
    {
      name: 'start-forward-replication',
      title: 'Replicate to the recovery site again (only what changed since failback)',
      retrySafe: true,
      run: async (ctx) => {
        if (ctx.machine.importedFrom) return ownImage.protectOriginal(ctx);
        const recovery = await connectedHost(ctx, ctx.machine.recoveryHostId!);
        const primary = await connectedHost(ctx, ctx.machine.primaryHostId);
        await ctx.host(recovery.id).replication.allowSender({ fingerprint: primary.replicationFingerprint! });
        await ctx.host(primary.id).replication.start({
          machineId: ctx.machine.id,
          diskIds: ctx.machine.disks.map((d) => d.id),
          target: replicationTarget(recovery),
          mode: 'continue',
        });
      },
    },
    {
      name: 'catch-up',
      title: 'Send the changes made since failback',
      retrySafe: true,
      run: async (ctx) => {
        if (ctx.machine.importedFrom) return ownImage.forwardFirstPoint(ctx);
        const status = await drained(ctx, ctx.machine.primaryHostId, 'forward replication to catch up');
        const disk = ctx.machine.disks.reduce((sum, d) => sum + d.sizeBytes, 0);
        await ctx.output({ reprotectSent: { sentBytes: status.sentBytes, diskBytes: disk } });
        // A server is protected again only once every leg is in sync (md's bitmap resync after the failback).
        if (ctx.machine.server) await onServer.legsInSync(ctx);
      },
    },
  ];
}

export function reprotectJob(vault: () => VaultContext): VaultJobDefinition<'reprotect'> {
  return lifecycleJob(vault, {
    operation: 'reprotect',
    steps: (input) => {
      return input.transition.from === 'failback-committed' ? forwardSteps() : reverseSteps(input);
    },
    // Reprotected to an alternate location: that is the machine's primary site from now on. A
    // physical server becomes a VM there (its disks are images now, never its devices).
    onSuccess: (machine, _input, output) => {
      const alternate = output.alternate as AlternateLocation | undefined;
      if (!alternate) return {};
      return {
        primaryHostId: alternate.hostId,
        disks: machine.server
          ? alternate.disks.map((d) => ({ ...d, serverDevice: null, serverStagingImage: null }))
          : alternate.disks,
        originalExists: true,
        ...(machine.server ? { server: null } : {}),
      };
    },
  });
}

const startPrimaryStep: LifecycleStep = {
  name: 'start-primary-machine',
  title: 'Start the machine at the primary site',
  retrySafe: true,
  run: async (ctx) => {
    if (ctx.machine.importedFrom) return ownImage.startOriginal(ctx);
    const primary = ctx.host(ctx.machine.primaryHostId);
    const settings = ctx.machine.recoverySettings;
    const status = await primary.hypervisor
      .status({ name: ctx.machine.name })
      .catch(() => ({ state: 'absent' as const }));
    if (status.state !== 'absent')
      await primary.hypervisor.undefine({ name: ctx.machine.name }).catch(() => {});
    await primary.hypervisor.define({
      machine: {
        name: ctx.machine.name,
        cpus: settings.cpus,
        memoryMiB: settings.memoryMiB,
        disks: ctx.machine.disks.map((d) => ({ diskId: d.id, nbdUri: d.nbdUri! })),
        nics: settings.nics.map((n) => ({ network: n.network, mac: n.mac, ip: n.ip })),
        ...(settings.boot ? { boot: settings.boot } : {}),
      },
    });
    await primary.hypervisor.start({ name: ctx.machine.name });
  },
};

/** A physical server starts through Haven's recovery environment, which writes the failback onto its disks. */
function serverBackSteps(): LifecycleStep[] {
  return [
    {
      name: 'prepare-recovery-environment',
      title: 'Build the recovery environment the server boots once, and let the server in again',
      retrySafe: true,
      run: onServer.prepareServerFailback,
    },
    {
      name: 'await-server',
      title:
        'Wait for the server to boot the recovery environment, then its own system with every leg in sync',
      retrySafe: true,
      weight: 4,
      run: onServer.awaitServerBack,
    },
  ];
}

/** Shut the recovery machine down, send the last changes, bring the original disks back and start the primary. */
function switchBackSteps(fullDownload: boolean, ontoServer: boolean): LifecycleStep[] {
  const steps: LifecycleStep[] = [
    {
      name: 'shut-down-recovery-machine',
      title: 'Shut down the machine at the recovery site',
      retrySafe: true,
      pointOfNoReturn: true,
      run: async (ctx) => {
        const copy = failoverCopy(ctx.machine);
        const result = await ctx
          .host(copy.hostId)
          .hypervisor.shutdown({ name: copy.vmName, timeoutSeconds: 60, onTimeout: 'power-off' });
        await ctx.output({ shutdown: `${result.outcome} after ${result.seconds.toFixed(1)} s` });
      },
    },
  ];
  if (fullDownload) {
    steps.push({
      name: 'full-download',
      title: 'Compare whole disks and copy every block that differs',
      retrySafe: true,
      run: async (ctx) => {
        if (ctx.machine.importedFrom) {
          ctx.progress(100, 'the mirror sent every block that differs: nothing more to compare');
          return;
        }
        const copy = failoverCopy(ctx.machine);
        const primary = await connectedHost(ctx, ctx.machine.primaryHostId);
        await ctx.host(copy.hostId).replication.stop({ machineId: ctx.machine.id });
        await ctx.host(copy.hostId).replication.start({
          machineId: ctx.machine.id,
          diskIds: ctx.machine.disks.map((d) => d.id),
          target: replicationTarget(primary),
          mode: 'full',
          source: { viewId: copy.viewId },
        });
      },
    });
  }
  steps.push(
    {
      name: 'send-last-changes',
      title: 'Send the last changes to the primary site',
      retrySafe: true,
      run: async (ctx) => {
        if (ctx.machine.importedFrom) return ownImage.sendLastPoint(ctx);
        const copy = failoverCopy(ctx.machine);
        const status = await drained(ctx, copy.hostId, 'the last changes');
        await ctx.output({ failbackSent: { sentBytes: status.sentBytes } });
        await ctx.host(copy.hostId).replication.stop({ machineId: ctx.machine.id });
      },
    },
    {
      name: 'restore-original-disks',
      title: 'Put the synchronised disks back in place at the primary',
      retrySafe: true,
      run: async (ctx) => {
        if (ctx.machine.importedFrom) return ownImage.writeBackOriginal(ctx);
        if (ctx.machine.server) return onServer.restoreStagingImages(ctx);
        const primary = ctx.host(ctx.machine.primaryHostId);
        await primary.replica.consolidate({
          machineId: ctx.machine.id,
          restore: ctx.machine.disks.map((d) => ({ diskId: d.id, imagePath: d.source })),
        });
        const disks = [];
        for (const d of ctx.machine.disks) {
          const exported = await primary.disk.attach({
            machineId: ctx.machine.id,
            diskId: d.id,
            source: d.source,
            sizeBytes: d.sizeBytes,
            resetJournal: true,
          });
          disks.push({ ...d, nbdUri: exported.nbdUri });
        }
        await ctx.save({ disks });
      },
    },
    ...(ontoServer ? serverBackSteps() : [startPrimaryStep]),
  );
  return steps;
}

const backAtPrimary = (machine: Machine): Partial<Machine> => ({ activeHostId: machine.primaryHostId });

export function failbackJob(vault: () => VaultContext): VaultJobDefinition<'failback'> {
  return lifecycleJob(vault, {
    operation: 'failback',
    steps: (input) =>
      input.dataSync === 'before-failover'
        ? [
            {
              name: 'synchronize',
              title: 'Copy the differences while the recovery machine keeps running',
              retrySafe: true,
              run: async (ctx) => {
                const copy = failoverCopy(ctx.machine);
                await drained(ctx, copy.hostId, 'the differences to reach the primary');
              },
            },
          ]
        : switchBackSteps(true, input.ontoServer === true),
    onSuccess: (machine, input) => (input.dataSync === 'before-failover' ? {} : backAtPrimary(machine)),
  });
}

export function completeFailoverJob(vault: () => VaultContext): VaultJobDefinition<'complete-failover'> {
  return lifecycleJob(vault, {
    operation: 'complete-failover',
    steps: (input) => switchBackSteps(false, input.ontoServer === true),
    onSuccess: backAtPrimary,
  });
}

/** Commit after failback: the recovery site's copy becomes its replica again, ready for reprotect forward. */
export function failbackCommitSteps(): LifecycleStep[] {
  return [
    {
      name: 'consolidate-recovery-copy',
      title: 'Make the recovery site’s copy its replica again (for reprotect)',
      retrySafe: true,
      run: async (ctx) => {
        if (ctx.machine.importedFrom) return ownImage.seedFromRecoveredCopy(ctx);
        const copy = failoverCopy(ctx.machine);
        const recovery = ctx.host(copy.hostId);
        await recovery.hypervisor.fence({ name: copy.vmName });
        await recovery.hypervisor.undefine({ name: copy.vmName }).catch(() => {});
        await recovery.replica.consolidateView({ machineId: ctx.machine.id, viewId: copy.viewId });
        await ctx.save({ runtime: { ...ctx.machine.runtime, failover: null } });
      },
    },
  ];
}
