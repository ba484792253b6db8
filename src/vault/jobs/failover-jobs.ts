import { isoNow } from '../../clock/index.ts';
import { type RecoveryPointRequest, selectRecoveryPoint, vmNameOf } from '../../domain/index.ts';
import type { Machine, RecoveryPoint, RunningCopy } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { PointView } from '../../host/host-services.ts';
import type { RecoveryPointChoice } from '../lifecycle/operation-options.ts';
import { requireReplicaHost } from '../replica-host.ts';
import { fenceServer } from '../servers/index.ts';
import { fenceAlertKey, raiseFenceAlert } from '../source-fence.ts';
import type { VaultContext } from '../vault-context.ts';
import { failbackCommitSteps } from './failback-jobs.ts';
import type { VaultJobDefinition } from './job-inputs.ts';
import {
  type LifecycleStep,
  type LifecycleStepContext,
  lifecycleJob,
  pollUntil,
  replicaHostOnly,
} from './lifecycle-job.ts';
import { copyDefinition, defineAndStart, removeCopy } from './machine-copy.ts';
import { closeMovedViewStep, moveOffViewStep } from './move-off-view.ts';
import { shutDownServer } from './server-shutdown.ts';
import { fenceAndVerify } from './verified-fence.ts';

/**
 * The operations that start a machine from its replica (SPEC §2 steps 2–5):
 * test failover and its cleanup, unplanned and planned failover, change
 * recovery point and commit. The recovery machine boots straight from a
 * writable point-in-time view served by the replica store (SPEC §7: no copy
 * before boot), so the time to start does not depend on the disk size.
 */

/** Resolves the operator's recovery point choice against the replica's catalog (SPEC §3). */
async function choosePoint(ctx: LifecycleStepContext, choice: RecoveryPointChoice): Promise<RecoveryPoint> {
  const members =
    ctx.machine.groupId === null
      ? [ctx.machine]
      : (await ctx.vault.store.machines.list()).filter((m) => m.groupId === ctx.machine.groupId);
  // Multi-machine points are the ones every member holds: the catalog spans the whole group.
  const catalog = (
    await Promise.all(
      members.map((m) => ctx.host(requireReplicaHost(m)).replica.listPoints({ machineId: m.id })),
    )
  ).flat();
  const request: RecoveryPointRequest =
    choice.option === 'custom'
      ? { option: 'custom', pointId: String(choice.pointId) }
      : choice.option === 'latest-multi-machine-processed' ||
          choice.option === 'latest-multi-machine-app-consistent'
        ? { option: choice.option, members }
        : { option: choice.option };
  const { point } = selectRecoveryPoint(catalog, ctx.machine, request);
  await ctx.output({
    recoveryPoint: { id: point.id, time: point.time, type: point.type, option: choice.option },
  });
  ctx.progress(100, `${choice.option}: ${point.type} point of ${point.time}`);
  return point;
}

function pointStep(choice: RecoveryPointChoice): LifecycleStep {
  return {
    name: 'choose-point',
    title: 'Choose the recovery point',
    retrySafe: true,
    run: async (ctx) => {
      await choosePoint(ctx, choice);
    },
  };
}

/** The point chosen by the job's 'choose-point' step (kept in the job output so retries agree). */
async function chosenPoint(ctx: LifecycleStepContext): Promise<{ id: string; time: string }> {
  const job = await ctx.vault.store.jobs.get(ctx.job.id);
  const point = job?.output.recoveryPoint as { id: string; time: string } | undefined;
  if (!point) throw new HavenError('internal', 'the recovery point was not chosen');
  return point;
}

/** Defines and starts the copy (see copyDefinition); returns the name it runs under. */
async function runCopy(
  ctx: LifecycleStepContext,
  copy: Pick<RunningCopy, 'hostId' | 'disks' | 'vmName'>,
  testNetwork: string | null,
): Promise<string> {
  const definition = await copyDefinition(ctx, copy, testNetwork);
  await defineAndStart(ctx, copy.hostId, definition);
  return definition.name;
}

/** Opens a writable view of the replica at the point and starts a machine on it at the replica host. */
async function startCopy(
  ctx: LifecycleStepContext,
  options: { vmName: string; existing: RunningCopy | null; testNetwork: string | null; failover: boolean },
): Promise<RunningCopy> {
  const hostId = requireReplicaHost(ctx.machine);
  const services = ctx.host(hostId);
  const point = await chosenPoint(ctx);
  let copy = options.existing;
  if (!copy || copy.pointId !== point.id) {
    // A name of our own, so a retried step finds the view it opened before a crash.
    const viewId = `${ctx.machine.id.slice(0, 8)}-${options.failover ? 'fo' : 'test'}-${ctx.job.id.slice(0, 8)}`;
    const view: PointView = await services.replica.openView({
      machineId: ctx.machine.id,
      pointId: point.id,
      writable: true,
      viewId,
      ...(options.failover ? { failover: true } : {}),
    });
    copy = {
      hostId,
      viewId: view.viewId,
      vmName: options.vmName,
      pointId: point.id,
      pointTime: point.time,
      disks: view.disks.map((d) => ({ diskId: d.diskId, nbdUri: d.nbdUri })),
      startedAt: isoNow(ctx.vault.clock),
    };
  }
  const definition = await copyDefinition(ctx, copy, options.testNetwork);
  const vmName = definition.name;
  try {
    await defineAndStart(ctx, hostId, definition);
  } catch (error) {
    // A drill that did not start leaves nothing behind (machine, isolated network, view): the machine
    // goes back to protected, where nothing records them. A failover's copy stays for the operator.
    if (!options.failover && !options.existing) {
      await removeCopy(ctx, { ...copy, vmName }).catch((cleanup: unknown) => {
        ctx.progress(0, `could not remove the drill copy that failed to start: ${String(cleanup)}`);
      });
    }
    throw error;
  }
  ctx.progress(100, `${vmName} started on view ${copy.viewId} (${point.time})`);
  return { ...copy, vmName, startedAt: isoNow(ctx.vault.clock) };
}

/**
 * Stops the source machine so two copies never write at once (the split
 * brain users of other tools report). "Fenced" is said only when the
 * hypervisor, asked again, reports the machine off. When that cannot be
 * known (host unreachable, the fence or the check failed) the failover goes
 * on, the job, the machine and an alert say the source is not verified
 * fenced, and the vault fences it when its host is back (source-fence.ts);
 * when the hypervisor says it still runs, the copy is not started.
 */
async function fenceSource(ctx: LifecycleStepContext): Promise<void> {
  const source = ctx.machine.activeHostId;
  if (!ctx.vault.hosts.isConnected(source)) {
    await notFenced(ctx, 'the source host is unreachable', { failoverGoesOn: true });
    return;
  }
  const services = ctx.host(source);
  const outcome = ctx.machine.server
    ? await fenceServer(ctx.vault, ctx.machine, source, `failed over by job ${ctx.job.id}`)
    : await fenceAndVerify(services.hypervisor, vmNameOf(ctx.machine));
  if (!outcome.fenced && outcome.state !== 'unknown') {
    await notFenced(ctx, outcome.reason, { failoverGoesOn: false });
    throw new HavenError(
      'conflict',
      `machine '${ctx.machine.name}' was not fenced: ${outcome.reason}. The copy was not started, so two copies never run; ` +
        'power the source off at its host and run the failover again',
      { machineId: ctx.machine.id, state: outcome.state },
    );
  }
  await services.replication.stop({ machineId: ctx.machine.id });
  if (!outcome.fenced) {
    await notFenced(ctx, outcome.reason, { failoverGoesOn: true });
    return;
  }
  const at = isoNow(ctx.vault.clock);
  await ctx.vault.store.machines.recordSourceFence(ctx.machine.id, {
    verified: true,
    hostId: source,
    vmName: vmNameOf(ctx.machine),
    state: outcome.state,
    jobId: ctx.job.id,
    fencedAt: at,
    by: 'failover',
  });
  await ctx.vault.store.alerts.clear(fenceAlertKey(ctx.machine.id), at);
  await ctx.output({
    fence: `fenced (verified: the source machine is ${outcome.state}); replication stopped`,
  });
  ctx.progress(100, `fenced: the source machine is ${outcome.state}`);
}

/**
 * The job's output and a machine alert say the source may still run. When
 * the failover goes on without it, the machine records it too: the vault
 * fences that source as soon as its host is reachable again.
 */
async function notFenced(
  ctx: LifecycleStepContext,
  reason: string,
  { failoverGoesOn }: { failoverGoesOn: boolean },
): Promise<void> {
  const at = isoNow(ctx.vault.clock);
  if (failoverGoesOn) {
    await ctx.vault.store.machines.recordSourceFence(ctx.machine.id, {
      verified: false,
      hostId: ctx.machine.activeHostId,
      vmName: vmNameOf(ctx.machine),
      reason,
      jobId: ctx.job.id,
      since: at,
      attempts: 0,
      lastAttemptAt: null,
    });
  }
  const then = failoverGoesOn
    ? 'Haven stops it when its host is reachable again; until then make sure it stays off'
    : 'make sure it stays off';
  await ctx.output({ fence: `not verified: ${reason}; ${then}` });
  await raiseFenceAlert(
    ctx.vault,
    ctx.machine,
    `source machine not verified fenced (${reason}); ${then}`,
    at,
  );
  ctx.progress(100, `not verified: ${reason}`);
}

/**
 * Waits (bounded) for the started machine's first console output and records
 * when it came: how long the machine takes to come up at the other site,
 * which recovery plans add up into their RTO estimate. A machine that prints
 * nothing on its serial console is not an error: the time stays unknown.
 */
function machineUpStep(copyOf: (machine: Machine) => RunningCopy | null): LifecycleStep {
  return {
    name: 'wait-for-console',
    title: 'Wait for the machine to come up (first console output)',
    retrySafe: true,
    run: async (ctx) => {
      const copy = copyOf(ctx.machine);
      if (!copy) return;
      // Only a machine whose console is on the serial port tells when it is up; others are not waited for.
      if (!/console=ttyS/.test(ctx.machine.recoverySettings.boot?.cmdline ?? '')) {
        ctx.progress(100, 'no serial console configured: time to come up not measured');
        return;
      }
      const started = Date.parse(ctx.job.startedAt ?? ctx.job.createdAt);
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline && !ctx.signal.aborted) {
        const log = await ctx
          .host(copy.hostId)
          .hypervisor.consoleLog({ name: copy.vmName, tail: 1 })
          .catch(() => null);
        if (log && log.lines.length > 0) {
          const at = new Date().toISOString();
          await ctx.output({ machineUp: { at, seconds: (Date.parse(at) - started) / 1000 } });
          ctx.progress(100, `console output after ${((Date.parse(at) - started) / 1000).toFixed(1)} s`);
          return;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      ctx.progress(100, 'no console output yet; the machine was started');
    },
  };
}

export function testFailoverJob(vault: () => VaultContext): VaultJobDefinition<'test-failover'> {
  return lifecycleJob(vault, {
    operation: 'test-failover',
    steps: (input) => [
      pointStep(input.recoveryPoint),
      {
        name: 'start-drill-machine',
        title: 'Start the drill copy on the isolated test network',
        retrySafe: true,
        run: async (ctx) => {
          const host = await ctx.vault.store.hosts.get(requireReplicaHost(ctx.machine));
          const site = host ? await ctx.vault.store.sites.get(host.siteId) : undefined;
          const network = input.network ?? site?.testNetwork ?? 'haven-test';
          const copy = await startCopy(ctx, {
            vmName: `${ctx.machine.recoverySettings.targetName}-test`,
            existing: ctx.machine.runtime.test,
            testNetwork: network,
            failover: false,
          });
          await ctx.save({ runtime: { ...ctx.machine.runtime, test: { ...copy, network } } });
          await ctx.output({ drill: { vmName: copy.vmName, network, hostId: copy.hostId } });
        },
      },
      machineUpStep((m) => m.runtime.test),
    ],
  });
}

export function cleanupTestFailoverJob(
  vault: () => VaultContext,
): VaultJobDefinition<'cleanup-test-failover'> {
  return lifecycleJob(vault, {
    operation: 'cleanup-test-failover',
    steps: (input) => [
      {
        name: 'remove-drill-machine',
        title: 'Remove the drill copy and its writes',
        retrySafe: true,
        run: async (ctx) => {
          const copy = ctx.machine.runtime.test;
          if (copy) {
            const console = await ctx
              .host(copy.hostId)
              .hypervisor.consoleLog({ name: copy.vmName, tail: 20 })
              .catch(() => null);
            if (console) await ctx.output({ drillConsoleTail: console.lines });
            await removeCopy(ctx, copy);
          }
          await ctx.save({ runtime: { ...ctx.machine.runtime, test: null } });
        },
      },
      {
        name: 'record-notes',
        title: 'Record the drill notes',
        retrySafe: true,
        run: async (ctx) => {
          await ctx.output({ notes: input.notes ?? '' });
        },
      },
    ],
  });
}

/** How long a planned failover waits for the guest to power itself down when no force-off is asked for. */
const PLANNED_SHUTDOWN_SECONDS = 90;
/** How long an unplanned failover waits for the writes made before its shutdown to reach the replica. */
const UNPLANNED_DRAIN_MS = 60_000;

/**
 * Waits until the source's sender has shipped everything in its journals.
 * After the source was shut down nothing is added, so that is every write
 * made until the shutdown ended. `required`: a planned failover fails
 * without it; an unplanned one goes on from the newest point there is, and
 * says how much did not arrive.
 */
function drainStep(options: { timeoutMs: number; required: boolean }): LifecycleStep {
  return {
    name: 'drain',
    title: options.required
      ? 'Send every write still on its way to the recovery site'
      : 'Send the writes made until the shutdown to the recovery site (bounded)',
    retrySafe: true,
    ...(options.required ? {} : { hosts: replicaHostOnly }),
    run: async (ctx) => {
      if (!options.required && !ctx.vault.hosts.isConnected(ctx.machine.activeHostId)) {
        await ctx.output({ drain: 'source host unreachable: the newest point at the replica is used' });
        return;
      }
      const replication = ctx.host(ctx.machine.activeHostId).replication;
      let queued = Number.NaN;
      try {
        await pollUntil(
          ctx,
          async () => {
            const status = await replication.status({ machineId: ctx.machine.id });
            queued = status.queuedBytes;
            ctx.progress(status.queuedBytes === 0 ? 100 : 50, `${status.queuedBytes} bytes to send`);
            return status.queuedBytes === 0 && status.state === 'streaming' ? status : undefined;
          },
          { what: 'the replica to catch up', intervalMs: 200, timeoutMs: options.timeoutMs },
        );
        await ctx.output({ drain: 'every write made until the shutdown reached the replica' });
      } catch (error) {
        if (options.required || ctx.signal.aborted) throw error;
        const message = error instanceof Error ? error.message : String(error);
        await ctx.output({
          drain: `incomplete (${message}; ${Number.isNaN(queued) ? 'unknown' : queued} bytes not sent): the newest point at the replica is used`,
        });
      }
    },
  };
}

/** Planned: shut down (force off after the given seconds if asked), drain, take the latest point. */
function plannedShutdownStep(forceOffAfterSeconds: number | null): LifecycleStep {
  return {
    name: 'shut-down-source',
    title:
      forceOffAfterSeconds === null
        ? 'Shut down the source machine'
        : `Shut down the source machine (forced off after ${forceOffAfterSeconds} s)`,
    retrySafe: true,
    run: async (ctx) => {
      if (ctx.machine.server) {
        await shutDownServer(ctx, { required: true, timeoutSeconds: PLANNED_SHUTDOWN_SECONDS });
        return;
      }
      const hypervisor = ctx.host(ctx.machine.activeHostId).hypervisor;
      const result = await hypervisor
        .shutdown({
          name: vmNameOf(ctx.machine),
          timeoutSeconds: forceOffAfterSeconds ?? PLANNED_SHUTDOWN_SECONDS,
          onTimeout: forceOffAfterSeconds === null ? 'fail' : 'power-off',
        })
        .catch((error: unknown) => {
          if (!(error instanceof HavenError && error.code === 'conflict')) throw error;
          throw new HavenError(
            'conflict',
            `machine '${ctx.machine.name}' did not power down within ${PLANNED_SHUTDOWN_SECONDS} s of the ACPI powerdown request ` +
              '(its guest may ignore ACPI). Run the planned failover again with --force-off-after 60s to power it off ' +
              'after that long, or shut it down from inside the guest first',
            { machineId: ctx.machine.id, allowed: ['planned-failover --force-off-after', 'failover'] },
          );
        });
      await ctx.output({
        shutdown:
          result.outcome === 'powered-off'
            ? `forced off after ${result.seconds.toFixed(1)} s: the guest did not power down within ${forceOffAfterSeconds} s`
            : `${result.outcome} after ${result.seconds.toFixed(1)} s`,
      });
    },
  };
}

/**
 * Unplanned with "shut down first": the point is chosen after the shutdown
 * ends, so the writes made during it count ('latest' also waits, bounded, for
 * them to reach the replica). A shutdown that fails does not stop the failover.
 */
function unplannedShutdownStep(): LifecycleStep {
  return {
    name: 'shut-down-source',
    title: 'Shut down the source machine (failover continues if this fails)',
    retrySafe: true,
    hosts: replicaHostOnly,
    run: async (ctx) => {
      try {
        if (!ctx.vault.hosts.isConnected(ctx.machine.activeHostId)) {
          throw new HavenError('unreachable', 'the source host is not connected');
        }
        if (ctx.machine.server) {
          await shutDownServer(ctx, { required: false, timeoutSeconds: PLANNED_SHUTDOWN_SECONDS });
          return;
        }
        const result = await ctx
          .host(ctx.machine.activeHostId)
          .hypervisor.shutdown({ name: ctx.machine.name, timeoutSeconds: 60, onTimeout: 'stop' });
        await ctx.output({ shutdown: `${result.outcome} after ${result.seconds.toFixed(1)} s` });
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        await ctx.output({ shutdown: `failed, continuing with the failover: ${message}` });
        ctx.progress(100, `shutdown failed (${message}); continuing`);
      }
    },
  };
}

type FailoverHow =
  | { planned: true; forceOffAfterSeconds: number | null }
  | { planned: false; recoveryPoint: RecoveryPointChoice; shutdownSource: boolean };

/** A planned failover shuts down and drains first, then takes the latest point; an unplanned one takes the operator's. */
function failoverSteps(how: FailoverHow): LifecycleStep[] {
  const steps: LifecycleStep[] = [];
  if (how.planned) {
    steps.push(
      plannedShutdownStep(how.forceOffAfterSeconds),
      drainStep({ timeoutMs: 30 * 60_000, required: true }),
      pointStep({ option: 'latest' }),
    );
  } else {
    if (how.shutdownSource !== false) {
      steps.push(unplannedShutdownStep());
      if (how.recoveryPoint.option === 'latest')
        steps.push(drainStep({ timeoutMs: UNPLANNED_DRAIN_MS, required: false }));
    }
    steps.push({ ...pointStep(how.recoveryPoint), hosts: replicaHostOnly });
  }
  const where = how.planned ? {} : { hosts: replicaHostOnly };
  steps.push(
    {
      name: 'fence-source',
      title: 'Fence the source machine',
      retrySafe: true,
      pointOfNoReturn: true,
      ...where,
      run: fenceSource,
    },
    {
      name: 'start-recovery-machine',
      title: 'Start the machine at the recovery site from the recovery point',
      retrySafe: true,
      ...where,
      run: async (ctx) => {
        const copy = await startCopy(ctx, {
          vmName: ctx.machine.recoverySettings.targetName,
          existing: ctx.machine.runtime.failover,
          testNetwork: null,
          failover: true,
        });
        await ctx.save({ runtime: { ...ctx.machine.runtime, failover: copy } });
      },
    },
    { ...machineUpStep((m) => m.runtime.failover), ...where },
  );
  return steps;
}

/** After a failover the machine runs at the host that held its replica. */
function movedToReplicaHost(machine: Machine): Partial<Machine> {
  return { activeHostId: machine.runtime.failover?.hostId ?? machine.activeHostId };
}

export function failoverJob(vault: () => VaultContext): VaultJobDefinition<'failover'> {
  return lifecycleJob(vault, {
    operation: 'failover',
    steps: ({ recoveryPoint, shutdownSource }) =>
      failoverSteps({ planned: false, recoveryPoint, shutdownSource }),
    onSuccess: movedToReplicaHost,
  });
}

export function plannedFailoverJob(vault: () => VaultContext): VaultJobDefinition<'planned-failover'> {
  return lifecycleJob(vault, {
    operation: 'planned-failover',
    steps: ({ forceOffAfterSeconds }) =>
      failoverSteps({ planned: true, forceOffAfterSeconds: forceOffAfterSeconds ?? null }),
    onSuccess: movedToReplicaHost,
  });
}

export function changeRecoveryPointJob(
  vault: () => VaultContext,
): VaultJobDefinition<'change-recovery-point'> {
  return lifecycleJob(vault, {
    operation: 'change-recovery-point',
    steps: (input) => [
      {
        name: 'choose-point',
        title: 'Choose the new recovery point',
        retrySafe: true,
        run: async (ctx) => {
          // The machine now runs at the replica host; its catalog is there.
          const copy = ctx.machine.runtime.failover;
          if (!copy)
            throw new HavenError('conflict', `machine '${ctx.machine.name}' has no failed-over copy`);
          const catalog = await ctx.host(copy.hostId).replica.listPoints({ machineId: ctx.machine.id });
          const choice = input.recoveryPoint;
          const { point } = selectRecoveryPoint(
            catalog,
            ctx.machine,
            choice.option === 'custom'
              ? { option: 'custom', pointId: String(choice.pointId) }
              : { option: 'latest' },
          );
          await ctx.output({
            recoveryPoint: { id: point.id, time: point.time, type: point.type, option: choice.option },
          });
        },
      },
      {
        name: 'restart-from-point',
        title: 'Restart the recovery machine from the new point',
        retrySafe: true,
        run: async (ctx) => {
          const copy = ctx.machine.runtime.failover!;
          const point = await chosenPoint(ctx);
          if (copy.pointId !== point.id) {
            await removeCopy(ctx, copy);
            const services = ctx.host(copy.hostId);
            const view = await services.replica.openView({
              machineId: ctx.machine.id,
              pointId: point.id,
              writable: true,
              viewId: `${ctx.machine.id.slice(0, 8)}-fo-${ctx.job.id.slice(0, 8)}`,
              failover: true,
            });
            const next: RunningCopy = {
              ...copy,
              viewId: view.viewId,
              pointId: point.id,
              pointTime: point.time,
              disks: view.disks.map((d) => ({ diskId: d.diskId, nbdUri: d.nbdUri })),
            };
            await ctx.save({ runtime: { ...ctx.machine.runtime, failover: next } });
          }
          const current = (await ctx.reload()).runtime.failover!;
          await runCopy(ctx, current, null);
          await ctx.save({
            runtime: { ...ctx.machine.runtime, failover: { ...current, startedAt: isoNow(ctx.vault.clock) } },
          });
        },
      },
    ],
  });
}

export function commitJob(vault: () => VaultContext): VaultJobDefinition<'commit'> {
  return lifecycleJob(vault, {
    operation: 'commit',
    steps: (input) =>
      input.transition.from === 'failed-back'
        ? failbackCommitSteps()
        : [
            moveOffViewStep(),
            {
              name: 'commit-point',
              title: 'Keep the chosen recovery point and delete the others',
              retrySafe: true,
              run: async (ctx) => {
                const copy = ctx.machine.runtime.failover;
                if (!copy)
                  throw new HavenError(
                    'conflict',
                    `machine '${ctx.machine.name}' has no failed-over copy to commit`,
                  );
                await ctx
                  .host(copy.hostId)
                  .replica.commitPoint({ machineId: ctx.machine.id, pointId: copy.pointId });
                await ctx.vault.store.recoveryPoints.deleteAllExcept(ctx.machine.id, null);
                await ctx.output({ committed: { pointId: copy.pointId, time: copy.pointTime } });
              },
            },
            closeMovedViewStep(),
          ],
  });
}
