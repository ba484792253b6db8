/**
 * Reprotect, failback and reprotect forward of a machine that runs on its own
 * image (an imported libvirt domain), the way its forward protection works:
 * QEMU's active mirror of the running side into journal-only sinks, the
 * other side's replica following the sinks' journals. The replica is first
 * seeded, locally, from the image the other side already has (the original
 * domain's, or the recovered copy's), and the mirror's first copy is
 * compared with it: only blocks that differ are journaled and sent. Failback
 * writes the reverse replica's last point into the original image in place
 * (its own format, only the blocks that differ) and starts the original
 * domain. Each function is the run of the step of the same name in
 * failback-jobs.ts for such a machine.
 */
import { vmNameOf } from '../../domain/index.ts';
import type { Machine, RunningCopy } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { HostServices, MirrorStatus } from '../../host/host-services.ts';
import { mib } from './copy-progress.ts';
import {
  connectedHost,
  type LifecycleStepContext,
  pollUntil,
  ReplicationErrorWatch,
  replicationTarget,
} from './lifecycle-job.ts';

/** The recovered copy, moved off its view onto local images by commit (what it reads and writes now). */
function movedCopy(
  ctx: LifecycleStepContext,
): RunningCopy & { localImages: NonNullable<RunningCopy['localImages']> } {
  const copy = ctx.machine.runtime.failover;
  if (!copy?.localImages) {
    throw new HavenError(
      'operation_not_allowed',
      `machine '${ctx.machine.name}' (domain '${vmNameOf(ctx.machine)}') runs at the recovery site ${copy ? `from view ${copy.viewId}` : 'nowhere Haven knows'}: ` +
        'reprotect of an imported domain needs its recovered copy on local images (commit moves it there); run commit on a libvirt recovery host first',
      { machineId: ctx.machine.id, state: ctx.machine.state, allowed: ['commit'] },
    );
  }
  return { ...copy, localImages: copy.localImages };
}

function imageOf(copy: ReturnType<typeof movedCopy>, diskId: string): string {
  const found = copy.localImages.find((i) => i.diskId === diskId);
  if (!found) {
    throw new HavenError(
      'conflict',
      `the recovered copy '${copy.vmName}' has no local image of disk ${diskId}`,
      {
        diskId,
      },
    );
  }
  return found.image;
}

function mirroredDisks(machine: Machine) {
  return machine.disks.map((d) => ({ diskId: d.id, target: d.fromDomain?.target ?? d.id }));
}

const formatOf = (disk: Machine['disks'][number]): string => disk.fromDomain?.format ?? 'raw';

/** Ends what forward protection left at a host (the mirror's watch, the sender, the sinks and their journals). */
async function removeProtection(services: HostServices, machine: Machine): Promise<void> {
  await services.mirror.unprotect({ machineId: machine.id });
  await services.replication.stop({ machineId: machine.id });
  const attached = await services.disk.list({ machineId: machine.id });
  for (const d of attached) await services.disk.detach({ machineId: machine.id, diskId: d.diskId });
}

/**
 * Arms the mirror of `domain` at `from` into fresh sinks whose journals
 * `to`'s seeded replica follows; the first copy is compared with it.
 */
async function protectSeeded(
  ctx: LifecycleStepContext,
  fromHostId: string,
  toHostId: string,
  domain: string,
  imageOfDisk: (disk: Machine['disks'][number]) => string,
): Promise<MirrorStatus> {
  const from = await connectedHost(ctx, fromHostId);
  const to = await connectedHost(ctx, toHostId);
  const services = ctx.host(from.id);
  const disks = [];
  for (const d of ctx.machine.disks) {
    const exported = await services.disk.attach({
      machineId: ctx.machine.id,
      diskId: d.id,
      source: imageOfDisk(d),
      sizeBytes: d.sizeBytes,
      sink: true,
      // The replica was seeded from an image: the journal starts again at 1 (a retry keeps the attached sink).
      resetJournal: true,
    });
    disks.push({ ...d, nbdUri: exported.nbdUri });
  }
  await ctx.save({ disks });
  await ctx.host(to.id).replication.allowSender({ fingerprint: from.replicationFingerprint! });
  await services.replication.start({
    machineId: ctx.machine.id,
    diskIds: ctx.machine.disks.map((d) => d.id),
    target: replicationTarget(to),
    mode: 'continue',
  });
  const status = await services.mirror.protect({
    machineId: ctx.machine.id,
    domain,
    disks: mirroredDisks(ctx.machine),
    seeded: true,
  });
  ctx.progress(
    100,
    `domain '${domain}' at ${from.name}: mirror ${status.state}, compared with the replica at ${to.name}`,
  );
  return status;
}

/**
 * Waits until the replica at `toHostId` has a point and the mirror at
 * `fromHostId` is armed; returns what crossed: the sender's bytes and what
 * the first, compared copy journaled and skipped.
 */
async function firstPoint(ctx: LifecycleStepContext, fromHostId: string, toHostId: string, what: string) {
  const from = ctx.host(fromHostId);
  const to = ctx.host(toHostId);
  const broken = new ReplicationErrorWatch(what);
  const mirror = await pollUntil(
    ctx,
    async () => {
      const status = await from.replication.status({ machineId: ctx.machine.id });
      broken.check(status);
      const m = status.mirror;
      const copying = (m?.disks ?? []).filter((d) => d.copy !== null);
      const done = copying.reduce((s, d) => s + d.copy!.doneBytes, 0);
      const total = copying.reduce((s, d) => s + d.copy!.totalBytes, 0);
      ctx.progress(
        total > 0 ? Math.min(99, Math.floor((100 * done) / total)) : 50,
        `mirror ${m?.state ?? 'not reported'}${total > 0 ? `: ${mib(done)} of ${mib(total)} MiB compared` : ''}; ${status.sentBytes} bytes sent`,
      );
      if (m?.state !== 'armed' || status.queuedBytes > 0) return undefined;
      const points = await to.replica.listPoints({ machineId: ctx.machine.id });
      return points.length > 0 ? { mirror: m, sentBytes: status.sentBytes } : undefined;
    },
    { what, intervalMs: 250 },
  );
  const journaledBytes = mirror.mirror.disks.reduce((s, d) => s + (d.lastRearm?.journaledBytes ?? 0), 0);
  const skippedBytes = mirror.mirror.disks.reduce((s, d) => s + (d.lastRearm?.skippedBytes ?? 0), 0);
  const diskBytes = ctx.machine.disks.reduce((s, d) => s + d.sizeBytes, 0);
  await ctx.output({
    reprotectSent: { sentBytes: mirror.sentBytes, journaledBytes, skippedBytes, diskBytes },
  });
  ctx.progress(
    100,
    `${mib(journaledBytes)} MiB differed and were sent (${mirror.sentBytes} bytes on the wire), ${mib(skippedBytes)} MiB already there`,
  );
}

// ---- reprotect: recovery → primary ------------------------------------------

/** check-primary-off, after the original domain was found off: forward protection's leftovers go. */
export async function leaveOriginalOff(
  ctx: LifecycleStepContext,
  alternateHostId: string | undefined,
): Promise<void> {
  if (alternateHostId) {
    throw new HavenError(
      'operation_not_allowed',
      `machine '${ctx.machine.name}' is the libvirt domain '${vmNameOf(ctx.machine)}': it fails back to its own domain and image at its primary host; ` +
        'reprotect to an alternate host is not available for imported domains (reprotect without alternateHostId)',
      { machineId: ctx.machine.id, state: ctx.machine.state, field: 'alternateHostId' },
    );
  }
  movedCopy(ctx);
  await removeProtection(ctx.host(ctx.machine.primaryHostId), ctx.machine);
}

/** adopt-original-disks: the original images, read locally at the primary, seed the reverse replica there. */
export async function seedFromOriginal(ctx: LifecycleStepContext): Promise<void> {
  const primary = ctx.host(ctx.machine.primaryHostId);
  for (const [i, d] of ctx.machine.disks.entries()) {
    await primary.replica.seedFromImage({
      machineId: ctx.machine.id,
      diskId: d.id,
      imagePath: d.source,
      format: formatOf(d),
      sizeBytes: d.sizeBytes,
    });
    ctx.progress(((i + 1) / ctx.machine.disks.length) * 100, `disk ${d.id}: replica seeded from ${d.source}`);
  }
  await ctx.output({ reprotect: { seededFrom: ctx.machine.disks.map((d) => d.source) } });
}

/** start-reverse-replication: the recovered domain's mirror, compared with the seeded replica. */
export async function protectRecovered(ctx: LifecycleStepContext): Promise<void> {
  const copy = movedCopy(ctx);
  await protectSeeded(ctx, copy.hostId, ctx.machine.primaryHostId, copy.vmName, (d) => imageOf(copy, d.id));
}

/** resynchronize: the first point at the primary, and what it cost. */
export async function reverseFirstPoint(ctx: LifecycleStepContext): Promise<void> {
  const copy = movedCopy(ctx);
  await firstPoint(ctx, copy.hostId, ctx.machine.primaryHostId, 'the reverse replica’s first point');
}

// ---- failback: back to the original domain ---------------------------------

/** send-last-changes: the recovered domain is off; its last point reaches the primary, then the mirror goes. */
export async function sendLastPoint(ctx: LifecycleStepContext): Promise<void> {
  const copy = movedCopy(ctx);
  const recovery = ctx.host(copy.hostId);
  const primary = ctx.host(ctx.machine.primaryHostId);
  // The mirror service cuts a last point when it sees the domain off soon enough after a synced pass.
  const last = await pollUntil(
    ctx,
    async () => {
      const m = await recovery.mirror.status({ machineId: ctx.machine.id });
      ctx.progress(
        20,
        `mirror of '${copy.vmName}': ${m.state}${m.disks.some((d) => d.state === 'domain-off') ? ', domain off' : ''}`,
      );
      if (!m.disks.every((d) => d.state === 'domain-off')) return undefined;
      return m.stoppedPointAt ?? undefined;
    },
    { what: `the last point of '${copy.vmName}' after its shutdown`, intervalMs: 250, timeoutMs: 30_000 },
  ).catch((error: unknown) => {
    if (ctx.signal.aborted) throw error;
    throw new HavenError(
      'conflict',
      `machine '${ctx.machine.name}': '${copy.vmName}' stopped but no point was cut after its last write ` +
        `(its mirror was not armed when it stopped: ${error instanceof Error ? error.message : String(error)}); ` +
        'start it again, let reprotect show it healthy, then fail back again',
      { machineId: ctx.machine.id },
    );
  });
  const broken = new ReplicationErrorWatch('the last changes');
  await pollUntil(
    ctx,
    async () => {
      const status = await recovery.replication.status({ machineId: ctx.machine.id });
      broken.check(status);
      ctx.progress(60, `${status.state}: ${status.queuedBytes} bytes to send`);
      if (status.state !== 'streaming' || status.queuedBytes > 0) return undefined;
      const points = await primary.replica.listPoints({ machineId: ctx.machine.id });
      const newest = points.at(-1);
      return newest && Date.parse(newest.time) >= Date.parse(last) ? newest : undefined;
    },
    { what: 'the last point to reach the primary', intervalMs: 250 },
  );
  const status = await recovery.replication.status({ machineId: ctx.machine.id });
  await ctx.output({ failbackSent: { sentBytes: status.sentBytes, lastPointAt: last } });
  await removeProtection(recovery, ctx.machine);
}

/** restore-original-disks: the last point into the original images, in place, only what differs. */
export async function writeBackOriginal(ctx: LifecycleStepContext): Promise<void> {
  const primary = ctx.host(ctx.machine.primaryHostId);
  const done = await primary.replica.writeBackToImage({
    machineId: ctx.machine.id,
    restore: ctx.machine.disks.map((d) => ({ diskId: d.id, imagePath: d.source, format: formatOf(d) })),
  });
  await ctx.output({ writtenBack: done });
  ctx.progress(
    100,
    done.pointId === null
      ? 'already written back'
      : `${mib(done.writtenBytes)} MiB written into the original image(s), ${mib(done.comparedBytes)} MiB compared`,
  );
}

/** start-primary-machine: the original domain starts on its own image. */
export async function startOriginal(ctx: LifecycleStepContext): Promise<void> {
  const hypervisor = ctx.host(ctx.machine.primaryHostId).hypervisor;
  const name = vmNameOf(ctx.machine);
  const status = await hypervisor.status({ name });
  if (status.state !== 'running') await hypervisor.start({ name });
  ctx.progress(100, `domain '${name}' started on its own image`);
}

// ---- commit after failback, and reprotect forward ---------------------------

/** consolidate-recovery-copy: the recovered copy goes; its last image seeds the recovery site's replica. */
export async function seedFromRecoveredCopy(ctx: LifecycleStepContext): Promise<void> {
  const copy = movedCopy(ctx);
  const recovery = ctx.host(copy.hostId);
  await recovery.hypervisor.fence({ name: copy.vmName });
  // The replica of before the failover is older than what failed back: the copy's image replaces it.
  await recovery.replica.deletePoints({ machineId: ctx.machine.id });
  for (const d of ctx.machine.disks) {
    await recovery.replica.seedFromImage({
      machineId: ctx.machine.id,
      diskId: d.id,
      imagePath: imageOf(copy, d.id),
      format: 'qcow2',
      sizeBytes: d.sizeBytes,
    });
  }
  await recovery.hypervisor.undefine({ name: copy.vmName }).catch(() => {});
  await ctx.output({ recoveryReplica: `seeded from ${copy.localImages.map((i) => i.image).join(', ')}` });
  await ctx.save({ runtime: { ...ctx.machine.runtime, failover: null } });
}

/** start-forward-replication: the original domain's mirror again, compared with the seeded recovery replica. */
export async function protectOriginal(ctx: LifecycleStepContext): Promise<void> {
  await protectSeeded(
    ctx,
    ctx.machine.primaryHostId,
    ctx.machine.recoveryHostId!,
    vmNameOf(ctx.machine),
    (d) => d.source,
  );
}

/** catch-up: the first point at the recovery site. */
export async function forwardFirstPoint(ctx: LifecycleStepContext): Promise<void> {
  await firstPoint(
    ctx,
    ctx.machine.primaryHostId,
    ctx.machine.recoveryHostId!,
    'the recovery replica’s first point',
  );
}
