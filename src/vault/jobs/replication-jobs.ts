import type { Host, Machine } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { ReplicationStatus } from '../../host/host-services.ts';
import { hostServices } from '../host-call.ts';
import { replicaHostOf } from '../replica-host.ts';
import { serverLinkWords, serverSyncPercent } from '../servers/index.ts';
import type { VaultContext } from '../vault-context.ts';
import { copyProgress } from './copy-progress.ts';
import type { VaultJobDefinition } from './job-inputs.ts';
import {
  type LifecycleStep,
  type LifecycleStepContext,
  lifecycleJob,
  mirrorProblem,
  pollUntil,
  ReplicationErrorWatch,
  replicationTarget,
} from './lifecycle-job.ts';

/** A mirrored machine's copy is QEMU's background copy, while it runs; then the sender's. */
function mirrorCopyStatus(status: ReplicationStatus): ReplicationStatus {
  const copying = (status.mirror?.disks ?? []).filter((d) => d.copy !== null);
  if (copying.length === 0) return status;
  const doneBytes = copying.reduce((sum, d) => sum + d.copy!.doneBytes, 0);
  const totalBytes = copying.reduce((sum, d) => sum + d.copy!.totalBytes, 0);
  return {
    ...status,
    copy: { doneBytes, totalBytes },
    progress: totalBytes > 0 ? (100 * doneBytes) / totalBytes : 0,
  };
}

/** How long a job waits for a connected host to report its replication endpoint. */
const ENDPOINT_WAIT_MS = 30_000;

async function endpointOf(ctx: LifecycleStepContext, hostId: string): Promise<Host | null> {
  const deadline = Date.now() + ENDPOINT_WAIT_MS;
  while (Date.now() < deadline) {
    const host = await ctx.vault.store.hosts.get(hostId);
    if (host?.replicationAddress && host.replicationFingerprint) return host;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return null;
}

/** The host replicating a machine now (its active host) and the one receiving. */
async function replicationHosts(
  ctx: LifecycleStepContext,
  recoveryHostId: string,
): Promise<{ source: Host; target: Host }> {
  const { store } = ctx.vault;
  const source = await store.hosts.get(ctx.machine.activeHostId);
  const target = (await store.hosts.get(recoveryHostId)) ?? (await store.hosts.getByName(recoveryHostId));
  if (!source || !target)
    throw new HavenError('not_found', `a host of machine '${ctx.machine.name}' no longer exists`);
  for (const host of [source, target]) {
    if (!ctx.vault.hosts.isConnected(host.id)) {
      throw new HavenError(
        'unreachable',
        `host '${host.name}' is not connected to the vault; start its agent and retry`,
        {
          hostId: host.id,
        },
      );
    }
    if (!host.replicationAddress || !host.replicationFingerprint) {
      // A host reports its endpoint just after it connects (with its inventory): wait for it, bounded.
      const reported = await endpointOf(ctx, host.id);
      if (reported) {
        Object.assign(host, reported);
        continue;
      }
      throw new HavenError(
        'not_available',
        `host '${host.name}' has not reported a replication endpoint (is it a Haven 0.1 host agent?)`,
        {
          hostId: host.id,
        },
      );
    }
  }
  return { source, target };
}

/** Attaches every disk to the disk service of the machine's host and records where each is served. */
async function attachDisks(ctx: LifecycleStepContext): Promise<Machine> {
  const disk = ctx.host(ctx.machine.activeHostId).disk;
  const disks = [];
  for (const [i, d] of ctx.machine.disks.entries()) {
    const exported = await disk.attach({
      machineId: ctx.machine.id,
      diskId: d.id,
      source: d.source,
      sizeBytes: d.sizeBytes,
      // An imported domain keeps its own disk; QEMU's mirror writes into a journal-only sink.
      ...(ctx.machine.importedFrom ? { sink: true } : {}),
      // A server's md mirrors its device onto an NBD leg: the host keeps a staging image for it.
      ...(ctx.machine.server ? { serverLeg: true } : {}),
    });
    // A server's leg: where its host keeps the staging image (what a reprotect adopts).
    disks.push({
      ...d,
      nbdUri: exported.nbdUri,
      ...(exported.stagingImage ? { serverStagingImage: exported.stagingImage } : {}),
    });
    ctx.progress(((i + 1) / ctx.machine.disks.length) * 100, `${d.id}: ${exported.nbdUri}`);
  }
  return ctx.save({ disks });
}

/** Where the initial replication stands, from one status of the source host. */
interface InitialSync {
  percent: number;
  text: string;
  /** The copy is whole: the first recovery point may come now. */
  whole: boolean;
  /** Shown while whole and the recovery host lists no point yet. */
  awaitingPoint?: string;
}

/**
 * Initial replication ends at the first recovery point: polls the source
 * host's replication status (a broken path fails the step; progress never
 * goes back) until `stage` says the copy is whole and the recovery host lists
 * a point, and records that point.
 */
async function untilFirstPoint(
  ctx: LifecycleStepContext<'enable-replication'>,
  options: {
    watching: string;
    what: string;
    intervalMs: number;
    stage: (status: ReplicationStatus) => InitialSync;
  },
): Promise<void> {
  const source = ctx.host(ctx.machine.activeHostId);
  const replica = ctx.host(ctx.machine.recoveryHostId!);
  const broken = new ReplicationErrorWatch(options.watching);
  let shown = 0;
  const points = await pollUntil(
    ctx,
    async () => {
      const status = await source.replication.status({ machineId: ctx.machine.id });
      broken.check(status);
      const stage = options.stage(status);
      shown = Math.max(shown, stage.percent);
      ctx.progress(shown, stage.text);
      if (!stage.whole) return undefined;
      const list = await replica.replica.listPoints({ machineId: ctx.machine.id });
      if (list.length === 0 && stage.awaitingPoint) ctx.progress(shown, stage.awaitingPoint);
      return list.length > 0 ? list : undefined;
    },
    { what: options.what, intervalMs: options.intervalMs },
  );
  await ctx.output({ firstRecoveryPoint: points[points.length - 1] });
}

/** A VM's or imported domain's initial replication: every disk copied, then the writes made meanwhile. */
const initialReplicationStep: LifecycleStep<'enable-replication'> = {
  name: 'initial-replication',
  title: 'Initial replication (copy every disk, then the writes made meanwhile)',
  retrySafe: true,
  weight: 8,
  run: (ctx) =>
    untilFirstPoint(ctx, {
      watching: 'the initial replication',
      what: 'the first recovery point',
      intervalMs: 250,
      stage: (status) => {
        const copy = copyProgress(status.mirror ? mirrorCopyStatus(status) : status);
        const problem = mirrorProblem(status);
        return {
          percent: copy.percent,
          text:
            problem !== null
              ? problem
              : status.mirror && status.mirror.state !== 'armed'
                ? `mirror ${status.mirror.state}: ${copy.text}`
                : `${status.state}: ${copy.text}`,
          whole: status.state === 'streaming',
        };
      },
    }),
};

/**
 * A physical server's initial replication is md's own resync of each array
 * onto its NBD leg: wait for the agent to enrol and set up its arrays, for
 * every leg to be in sync, and for the first point the host cuts then.
 */
export const serverSyncStep: LifecycleStep<'enable-replication'> = {
  name: 'server-sync',
  title: "Wait for the server's agent and the first sync of its legs",
  retrySafe: true,
  weight: 8,
  run: (ctx) =>
    untilFirstPoint(ctx, {
      watching: "the first sync of the server's legs",
      what: "the server's legs to be in sync and its first recovery point",
      intervalMs: 500,
      stage: (status) => {
        const server = status.server;
        if (!server) {
          throw new HavenError(
            'not_available',
            `the host of server '${ctx.machine.name}' reports no server link for it: its agent does not serve physical servers`,
            { machineId: ctx.machine.id, hostId: ctx.machine.activeHostId },
          );
        }
        return {
          percent: serverSyncPercent(server),
          text:
            server.problem && server.state !== 'syncing'
              ? `${serverLinkWords(server)}: ${server.problem}`
              : serverLinkWords(server),
          whole: server.state === 'in-sync',
          awaitingPoint: 'in sync; waiting for the first recovery point',
        };
      },
    }),
};

/**
 * A server counts as protected only once its replica is known to boot as a
 * VM: the first point is opened in a throw-away writable view on the
 * recovery host and its first disk read for a boot loader, a root
 * filesystem found without the md array, fstab and virtio drivers in the
 * initramfs. A replica that would not boot fails the job (which stops
 * replication, as any failed enable does), saying what to fix on the server.
 */
const serverBootCheckStep: LifecycleStep<'enable-replication'> = {
  name: 'check-vm-boot',
  title: 'Check that the replica boots as a VM at the recovery site',
  retrySafe: true,
  run: async (ctx) => {
    const replica = ctx.host(ctx.machine.recoveryHostId!).replica;
    const points = await replica.listPoints({ machineId: ctx.machine.id });
    const point = points[points.length - 1];
    if (!point) {
      throw new HavenError('conflict', `server '${ctx.machine.name}' has no recovery point to check`, {
        machineId: ctx.machine.id,
      });
    }
    const viewId = `bootcheck-${ctx.job.id.slice(0, 8)}`;
    await replica.closeView({ viewId, discardWrites: true });
    await replica.openView({ machineId: ctx.machine.id, pointId: point.id, writable: true, viewId });
    let report: Awaited<ReturnType<typeof replica.checkFilesystems>>;
    try {
      ctx.progress(10, `reading point ${point.time} as a VM would boot it`);
      report = await replica.checkFilesystems({ viewId, vmBoot: true, timeoutMs: 5 * 60_000 });
    } finally {
      await replica.closeView({ viewId, discardWrites: true });
    }
    const check = report.vmBoot;
    await ctx.output({ vmBootCheck: { pointId: point.id, ...check } });
    if (!check?.bootable) {
      const failed = (check?.results ?? []).filter((r) => r.status === 'failed');
      throw new HavenError(
        'conflict',
        `server '${ctx.machine.name}': its replica (point ${point.time}) would not boot as a VM: ` +
          failed.map((r) => `${r.item}: ${r.detail}${r.fix ? ` (fix: ${r.fix})` : ''}`).join('; ') +
          '. Fix it on the server, then enable replication again',
        { machineId: ctx.machine.id, failed: failed.map((r) => r.item) },
      );
    }
    const notChecked = check.results.filter((r) => r.status === 'not-checked').map((r) => r.item);
    ctx.progress(
      100,
      `boots as a VM: ${check.results.filter((r) => r.status === 'passed').length} checks passed` +
        (notChecked.length ? `; not checked: ${notChecked.join(', ')}` : ''),
    );
  },
};

/**
 * Enable replication (SPEC §2 step 1): the disks go behind the disk service,
 * the recovery host learns to trust the sender, the initial copy runs while
 * the machine keeps running, and the machine is protected once the replica
 * has its first recovery point.
 */
export function enableReplicationJob(vault: () => VaultContext): VaultJobDefinition<'enable-replication'> {
  return lifecycleJob(vault, {
    operation: 'enable-replication',
    steps: (input) => {
      const { recoveryHostId } = input;
      const armMirrorStep: LifecycleStep<'enable-replication'> = {
        name: 'arm-mirror',
        title: 'Arm QEMU’s active mirror of the running domain (no restart)',
        retrySafe: true,
        run: async (ctx) => {
          const domain = ctx.machine.importedFrom?.domain;
          if (!domain)
            throw new HavenError('internal', `machine '${ctx.machine.name}' is not an imported domain`);
          const status = await ctx.host(ctx.machine.activeHostId).mirror.protect({
            machineId: ctx.machine.id,
            domain,
            disks: ctx.machine.disks.map((d) => ({ diskId: d.id, target: d.fromDomain!.target })),
          });
          ctx.progress(100, `domain '${domain}': mirror ${status.state}`);
        },
      };
      return [
        {
          name: 'check-hosts',
          title: 'Check the primary and recovery hosts',
          retrySafe: true,
          run: async (ctx) => {
            const { target } = await replicationHosts(ctx, recoveryHostId);
            const policy =
              (await ctx.vault.store.policies.get(input.policyId)) ??
              (await ctx.vault.store.policies.getByName(input.policyId));
            await ctx.save({ recoveryHostId: target.id, ...(policy ? { policyId: policy.id } : {}) });
          },
        },
        {
          name: 'attach-disks',
          title: 'Attach the disks to the disk service',
          retrySafe: true,
          run: async (ctx) => {
            await attachDisks(ctx);
          },
        },
        {
          name: 'trust-sender',
          title: 'Let the primary host send to the recovery host',
          retrySafe: true,
          run: async (ctx) => {
            const { source, target } = await replicationHosts(ctx, recoveryHostId);
            await ctx
              .host(target.id)
              .replication.allowSender({ fingerprint: source.replicationFingerprint! });
          },
        },
        {
          name: 'start-replication',
          title: 'Start replication',
          retrySafe: true,
          run: async (ctx) => {
            const { target } = await replicationHosts(ctx, recoveryHostId);
            await ctx.host(ctx.machine.activeHostId).replication.start({
              machineId: ctx.machine.id,
              diskIds: ctx.machine.disks.map((d) => d.id),
              target: replicationTarget(target),
              mode: 'full',
            });
          },
        },
        ...(input.liveMirror ? [armMirrorStep] : []),
        ...(input.serverLegs ? [serverSyncStep, serverBootCheckStep] : [initialReplicationStep]),
        {
          name: 'apply-retention',
          title: 'Apply the policy’s retention to the replica',
          retrySafe: true,
          run: async (ctx) => {
            const policy = ctx.machine.policyId
              ? await ctx.vault.store.policies.get(ctx.machine.policyId)
              : undefined;
            if (!policy) return;
            await ctx.host(ctx.machine.recoveryHostId!).replica.setRetention({
              machineId: ctx.machine.id,
              retentionSeconds: policy.retentionSeconds,
              appConsistentFrequencySeconds: policy.appConsistentFrequencySeconds,
            });
            ctx.progress(100, `points kept ${policy.retentionSeconds} s (policy ${policy.name})`);
          },
        },
      ];
    },
    onSettled: async (vault, machine, outcome) => {
      if (outcome === 'succeeded') return;
      // A cancelled or failed enable leaves nothing running: end the mirror, stop the sender, forget the recovery host.
      const source = hostServices(vault, machine.activeHostId);
      if (machine.importedFrom) await source.mirror.unprotect({ machineId: machine.id }).catch(() => {});
      await source.replication.stop({ machineId: machine.id }).catch(() => {});
      await vault.store.machines.update({ ...machine, recoveryHostId: null, policyId: null });
      await vault.store.machines.recordReplication(machine.id, null, 'unknown');
    },
  });
}

/** Disable replication: stop sending and delete the replica; the machine keeps running where it is. */
export function disableReplicationJob(vault: () => VaultContext): VaultJobDefinition<'disable-replication'> {
  return lifecycleJob(vault, {
    operation: 'disable-replication',
    steps: () => [
      {
        name: 'stop-replication',
        title: 'Stop replication',
        retrySafe: true,
        run: async (ctx) => {
          const source = ctx.host(ctx.machine.activeHostId);
          if (ctx.machine.importedFrom) {
            // The domain keeps running on its own disk; what Haven added to it goes, then the sinks.
            await source.mirror.unprotect({ machineId: ctx.machine.id });
            await source.replication.stop({ machineId: ctx.machine.id });
            for (const d of ctx.machine.disks)
              await source.disk.detach({ machineId: ctx.machine.id, diskId: d.id });
            ctx.progress(
              100,
              `mirror of domain '${ctx.machine.importedFrom.domain}' removed, sinks detached`,
            );
            return;
          }
          await source.replication.stop({ machineId: ctx.machine.id });
        },
      },
      {
        name: 'delete-replica',
        title: 'Delete the replica and its recovery points',
        retrySafe: true,
        run: async (ctx) => {
          const replicaHost = replicaHostOf(ctx.machine);
          if (replicaHost) {
            const { deleted } = await ctx
              .host(replicaHost)
              .replica.deletePoints({ machineId: ctx.machine.id });
            ctx.progress(100, `${deleted} replica disk(s) deleted`);
          }
          await ctx.vault.store.recoveryPoints.deleteAllExcept(ctx.machine.id, null);
        },
      },
    ],
    onSuccess: (machine) => ({ recoveryHostId: null, policyId: null, primaryHostId: machine.activeHostId }),
    onSettled: async (vault, machine, outcome) => {
      if (outcome === 'succeeded') await vault.store.machines.recordReplication(machine.id, null, 'unknown');
    },
  });
}
