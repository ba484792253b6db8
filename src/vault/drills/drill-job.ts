import { randomInt } from 'node:crypto';
import { isoNow } from '../../clock/index.ts';
import {
  type BootCheckSettings,
  type DrillCheck,
  type DrillCopy,
  type DrillMachineResult,
  type DrillPoint,
  type DrillPointChoice,
  type DrillRun,
  type DrillState,
  drillPassed,
  drillProbeAddress,
} from '../../domain/drill.ts';
import type { Machine, RecoveryPoint } from '../../domain/model.ts';
import { HavenError, notFound } from '../../errors/index.ts';
import type { FilesystemCheckReport } from '../../host/host-services.ts';
import type { NetworkProbeRequest, NetworkProbeResult } from '../../host/index.ts';
import { defineJob, type StepContext, type StepDefinition } from '../../job-engine/index.ts';
import type { VaultJobDefinition } from '../jobs/job-inputs.ts';
import { hostServices, waitForHosts } from '../jobs/lifecycle-job.ts';
import { type CopyContext, copyDefinition, defineAndStart, removeCopy } from '../jobs/machine-copy.ts';
import { requireReplicaHost } from '../replica-host.ts';
import type { VaultContext } from '../vault-context.ts';
import { drillAlerts } from './drill-alerts.ts';
import type { DrillJobInput } from './drill-job-input.ts';

/**
 * A drill of one machine, run by the vault: a test failover nobody has to
 * attend. It boots a recovery point on the isolated test network from a
 * copy-on-write overlay (production replication goes on untouched), checks
 * it, records each check with its evidence, and removes the drill machine and
 * its overlay — always: when a check fails, when the time limit is reached,
 * when it is cancelled, and after a vault restart (then it counts as
 * interrupted, never as proof).
 */

/** The longest a filesystem check of one drill may take (within the drill's own time limit). */
const FILESYSTEM_CHECK_MS = 10 * 60_000;

/** One drill check per filesystem found; a disk with none known is reported, never passed. */
export function filesystemChecks(report: FilesystemCheckReport, startedAt: string): DrillCheck[] {
  if (report.filesystems.length === 0) {
    return [
      {
        kind: 'filesystems',
        name: 'filesystems',
        result: 'not-checked',
        summary: 'no disk of the point holds a filesystem Haven could find',
        evidence: null,
        evidenceIsScriptOutput: false,
        startedAt,
        durationMs: report.durationMs,
      },
    ];
  }
  return report.filesystems.map((fs) => {
    const where =
      fs.location.partition === null
        ? fs.location.diskId
        : `${fs.location.diskId} partition ${fs.location.partition.number}`;
    const summary =
      fs.result === 'passed'
        ? fs.journalReplayed
          ? 'clean after its journal was replayed into the overlay'
          : 'clean'
        : (fs.reason ?? fs.result);
    return {
      kind: 'filesystems' as const,
      name: `filesystem ${where} (${fs.type}${fs.label ? ` '${fs.label}'` : ''})`,
      result: fs.result,
      summary,
      evidence: fs.evidence === '' ? null : fs.evidence,
      evidenceIsScriptOutput: false,
      startedAt,
      durationMs: fs.durationMs,
    };
  });
}

/** Console lines kept as the boot check's evidence. */
const EVIDENCE_LINES = 20;
/** How much of the console the boot check reads each time it looks. */
const CONSOLE_TAIL = 400;

/** The drill's names at the recovery host: its own, so a retried or resumed step finds what it made. */
export function drillCopyNames(drillId: string, machine: Pick<Machine, 'id' | 'recoverySettings'>) {
  const short = drillId.replace(/-/g, '').slice(0, 8);
  return {
    viewId: `drill-${machine.id.slice(0, 8)}-${short}`,
    vmName: `${machine.recoverySettings.targetName}-drill-${short}`,
  };
}

/** Which point a drill boots, among the replica's retained points. */
export function chooseDrillPoint(
  catalog: readonly RecoveryPoint[],
  choice: DrillPointChoice,
  random: (n: number) => number = randomInt,
): RecoveryPoint | null {
  const usable = catalog.filter((p) => p.processed);
  const newest = (points: RecoveryPoint[]) =>
    points.reduce<RecoveryPoint | null>(
      (best, p) => (best === null || p.sequence > best.sequence ? p : best),
      null,
    );
  switch (choice) {
    case 'latest-app-consistent':
      return newest(usable.filter((p) => p.type === 'app-consistent'));
    case 'latest-crash-consistent':
      return newest(usable.filter((p) => p.type === 'crash-consistent'));
    case 'random-retained':
      return usable.length === 0 ? null : usable[random(usable.length)]!;
  }
}

/** A check of the console: the boot pattern (or any output) within the time limit. */
export function bootCheckResult(
  lines: readonly string[],
  settings: BootCheckSettings,
): { up: boolean; evidence: string } {
  const pattern = settings.consolePattern === null ? null : new RegExp(settings.consolePattern);
  const at =
    pattern === null ? (lines.length > 0 ? lines.length - 1 : -1) : lines.findIndex((l) => pattern.test(l));
  if (at < 0) return { up: false, evidence: lines.slice(-EVIDENCE_LINES).join('\n') };
  return { up: true, evidence: lines.slice(Math.max(0, at + 1 - EVIDENCE_LINES), at + 1).join('\n') };
}

export function drillJob(vault: () => VaultContext): VaultJobDefinition<'drill'> {
  const runOf = async (id: string): Promise<DrillRun> => {
    const run = await vault().store.drillRuns.get(id);
    if (!run) throw notFound('drill', id);
    return run;
  };
  const machineOf = async (id: string): Promise<Machine> => {
    const machine = await vault().store.machines.get(id);
    if (!machine) throw notFound('machine', id);
    return machine;
  };
  /** Changes the drill's one machine result (a machine drill has exactly one). */
  const updateMachine = async (
    drillId: string,
    change: (m: DrillMachineResult) => DrillMachineResult,
    more: Partial<DrillRun> = {},
  ) => {
    const run = await runOf(drillId);
    await vault().store.drillRuns.update({ ...run, ...more, machines: run.machines.map(change) });
  };
  const addCheck = (drillId: string, check: DrillCheck) =>
    updateMachine(drillId, (m) => ({ ...m, checks: [...m.checks, check] }));

  /** Ends the step when the drill's time is up; the job then fails and cleans up. */
  const deadlineOf = (input: DrillJobInput, run: DrillRun) =>
    Date.parse(run.startedAt ?? run.createdAt) + input.timeLimitSeconds * 1000;
  const checkDeadline = (input: DrillJobInput, run: DrillRun) => {
    if (vault().clock.now().getTime() > deadlineOf(input, run)) {
      throw new HavenError(
        'limit_exceeded',
        `the drill's time limit of ${input.timeLimitSeconds} s was reached; its machine and overlay are removed`,
        { drillId: run.id, timeLimitSeconds: input.timeLimitSeconds },
      );
    }
  };

  const step = (
    name: string,
    title: string,
    run: (ctx: StepContext<DrillJobInput>, drill: DrillRun, copyCtx: CopyContext) => Promise<void>,
  ): StepDefinition<DrillJobInput> => ({
    name,
    title,
    retrySafe: true,
    run: async (ctx) => {
      const v = vault();
      const drill = await runOf(ctx.input.drillId);
      // A drill is proof only when it ran through in one go: after a vault restart it is cleaned up instead.
      if (ctx.carriedOver) throw await interrupted(v, ctx, drill);
      checkDeadline(ctx.input, drill);
      const machine = await machineOf(ctx.input.machineId);
      await run(ctx, drill, { vault: v, machine, host: (hostId) => hostServices(v, hostId) });
    },
  });

  return defineJob({
    kind: 'drill',
    steps: (input) => {
      const steps: StepDefinition<DrillJobInput>[] = [
        step('choose-point', 'Choose the recovery point and hold it for the drill', async (ctx, drill, c) => {
          const hostId = requireReplicaHost(c.machine);
          const catalog = await c.host(hostId).replica.listPoints({ machineId: c.machine.id });
          const point = chooseDrillPoint(catalog, input.point);
          if (point === null) {
            throw new HavenError(
              'not_available',
              `machine '${c.machine.name}' has no ${input.point.replace(/-/g, ' ')} point to drill`,
              { machineId: c.machine.id, point: input.point },
            );
          }
          const names = drillCopyNames(drill.id, c.machine);
          const host = await c.vault.store.hosts.get(hostId);
          const site = host ? await c.vault.store.sites.get(host.siteId) : undefined;
          const network = input.testNetwork ?? site?.testNetwork ?? 'haven-test';
          const copy: DrillCopy = { hostId, viewId: names.viewId, vmName: names.vmName, network };
          // Recorded before it is made: a vault that dies right after the host opened it still removes it.
          await saveCopy(vault(), drill.id, copy);
          // The overlay pins the point: retention does not merge past it until the drill closes it.
          await c.host(hostId).replica.openView({
            machineId: c.machine.id,
            pointId: point.id,
            writable: true,
            viewId: names.viewId,
          });
          const chosen: DrillPoint = { id: point.id, time: point.time, type: point.type };
          await updateMachine(drill.id, (m) => ({ ...m, point: chosen }), {});
          await ctx.output({ point: chosen, copy });
          ctx.progress(
            100,
            `${point.type} point of ${point.time} (${input.point}), held by overlay ${names.viewId}`,
          );
        }),
        ...(input.checks.filesystems
          ? [
              step(
                'check-filesystems',
                'Check every filesystem of the point on the recovery host, without booting it',
                async (ctx, drill, c) => {
                  const copy = copyOf(drill);
                  const startedAt = isoNow(c.vault.clock);
                  // Before the boot: nothing may run from the overlay while it is checked.
                  const timeoutMs = Math.max(
                    1000,
                    Math.min(FILESYSTEM_CHECK_MS, deadlineOf(input, drill) - Date.now()),
                  );
                  ctx.progress(
                    0,
                    `checking the filesystems of ${copy.viewId} (up to ${Math.round(timeoutMs / 1000)} s)`,
                  );
                  const report = await c
                    .host(copy.hostId)
                    .replica.checkFilesystems({ viewId: copy.viewId, timeoutMs });
                  const checks = filesystemChecks(report, startedAt);
                  for (const check of checks) await addCheck(drill.id, check);
                  const failed = checks.filter((x) => x.result === 'failed').length;
                  ctx.progress(
                    100,
                    `${checks.length} filesystem${checks.length === 1 ? '' : 's'}: ${failed} failed, ${checks.filter((x) => x.result === 'not-checked').length} not checked`,
                  );
                },
              ),
            ]
          : []),
        step(
          'boot',
          'Boot the point on the isolated test network and wait for it to come up',
          async (ctx, drill, c) => {
            const copy = copyOf(drill);
            const view = await c.host(copy.hostId).replica.viewInfo({ viewId: copy.viewId });
            const definition = await copyDefinition(
              c,
              {
                hostId: copy.hostId,
                vmName: copy.vmName,
                disks: view.disks.map((d) => ({ diskId: d.diskId, nbdUri: d.nbdUri })),
              },
              copy.network,
            );
            if (definition.name !== copy.vmName)
              await saveCopy(vault(), drill.id, { ...copy, vmName: definition.name });
            const startedAt = isoNow(c.vault.clock);
            await defineAndStart(c, copy.hostId, definition);
            ctx.progress(10, `${definition.name} started on ${copy.network}; waiting for it to come up`);
            const limitMs = Math.min(input.boot.timeoutSeconds * 1000, deadlineOf(input, drill) - Date.now());
            const until = Date.now() + Math.max(0, limitMs);
            let result = { up: false, evidence: '' };
            while (!ctx.signal.aborted) {
              const log = await c
                .host(copy.hostId)
                .hypervisor.consoleLog({ name: definition.name, tail: CONSOLE_TAIL })
                .catch(() => null);
              result = bootCheckResult(log?.lines ?? [], input.boot);
              if (result.up || Date.now() > until) break;
              await new Promise((r) => setTimeout(r, 250));
            }
            if (ctx.signal.aborted) throw ctx.signal.reason;
            const endedAt = Date.now();
            const what =
              input.boot.consolePattern === null
                ? 'console output'
                : `/${input.boot.consolePattern}/ on the console`;
            const rtoSeconds = (endedAt - Date.parse(drill.startedAt ?? drill.createdAt)) / 1000;
            await addCheck(drill.id, {
              kind: 'boot',
              name: 'boot',
              result: result.up ? 'passed' : 'failed',
              summary: result.up
                ? `up: ${what} ${((endedAt - Date.parse(startedAt)) / 1000).toFixed(1)} s after start`
                : `no ${what} within ${Math.round(limitMs / 1000)} s`,
              evidence: result.evidence,
              evidenceIsScriptOutput: false,
              startedAt,
              durationMs: endedAt - Date.parse(startedAt),
            });
            if (result.up) await updateMachine(drill.id, (m) => ({ ...m, rtoSeconds }), { rtoSeconds });
            ctx.progress(100, result.up ? `up after ${rtoSeconds.toFixed(1)} s` : `did not come up`);
          },
        ),
        ...(input.checks.script === null
          ? []
          : [
              step(
                'check-application',
                `Run script '${input.checks.script.name}' against the drill machine in the test network`,
                (ctx, drill, c) => checkApplication(ctx, drill, c, deadlineOf(input, drill), addCheck),
              ),
            ]),
        step('clean-up', 'Remove the drill machine and its overlay', async (ctx, drill, c) => {
          await cleanUpDrill(c.vault, drill);
          ctx.progress(100, 'drill machine and overlay removed');
        }),
      ];
      return steps;
    },
    settle: async ({ input, outcome, error }) => {
      const v = vault();
      const drill = await runOf(input.drillId);
      let cleanupError: string | null = null;
      // An interrupted drill has tried its clean-up and says how it went; the scheduler retries what is left.
      if (drill.state !== 'interrupted' && !drill.machines.every((m) => m.cleanedUp)) {
        cleanupError = await cleanUpDrill(v, drill).then(
          () => null,
          (e: unknown) => (e instanceof Error ? e.message : String(e)),
        );
      }
      const after = await runOf(input.drillId);
      const checks = after.machines.flatMap((m) => m.checks);
      // Cancelled for its time limit (by the scheduler, when a step hung): a failure, not an operator's choice.
      const timedOut = v.clock.now().getTime() > deadlineOf(input, after);
      const state: DrillState =
        after.state === 'interrupted'
          ? 'interrupted'
          : outcome === 'cancelled' && !timedOut
            ? 'cancelled'
            : outcome === 'succeeded' && drillPassed(checks)
              ? 'passed'
              : 'failed';
      const failedCheck = checks.find((c) => c.result === 'failed');
      const reason =
        state === 'passed'
          ? null
          : state === 'interrupted' || outcome === 'cancelled'
            ? (after.reason ?? error?.message ?? state)
            : (error?.message ??
              (failedCheck
                ? `${failedCheck.name}: ${failedCheck.summary}`
                : (after.reason ?? 'no check passed')));
      const ended: DrillRun = {
        ...after,
        state,
        reason:
          cleanupError === null ? reason : `${reason ?? 'passed'}; clean-up not finished: ${cleanupError}`,
        endedAt: isoNow(v.clock),
      };
      await v.store.drillRuns.update(ended);
      await drillAlerts(v).onDrillEnded(ended);
    },
  });
}

/**
 * A drill carried over a vault restart: its recovery host reconnects on its
 * own schedule (the job runs first), so the drill waits for it (bounded) and
 * removes its machine and overlay here, and only then says they are gone;
 * when the host stays away the reason says so and the scheduler retries.
 * Marked interrupted only once that is settled, so no other clean-up runs
 * alongside this one. Returns the error that ends the job.
 */
async function interrupted(
  vault: VaultContext,
  ctx: Pick<StepContext, 'progress' | 'signal'>,
  drill: DrillRun,
): Promise<HavenError> {
  const hostIds = [...new Set(drill.machines.flatMap((m) => (m.copy === null ? [] : [m.copy.hostId])))];
  const notRemoved = await waitForHosts(
    vault,
    ctx,
    hostIds,
    'the vault removes the drill machine and overlay once it does',
  )
    .then(() => cleanUpDrill(vault, drill))
    .then(
      () => null,
      (e: unknown) => (e instanceof Error ? e.message : String(e)),
    );
  const reason =
    notRemoved === null
      ? 'the vault restarted during the drill; its machine and overlay were removed'
      : `the vault restarted during the drill; its machine and overlay are not removed yet: ${notRemoved}`;
  const current = (await vault.store.drillRuns.get(drill.id)) ?? drill;
  await vault.store.drillRuns.update({ ...current, state: 'interrupted', reason });
  return new HavenError('conflict', `drill ${drill.id.slice(0, 8)}: ${reason}`, { drillId: drill.id });
}

/**
 * The application check: the drill's registered script, run by the recovery
 * host inside the drill's isolated test network (network.runProbe) with the
 * drill machine's address, within the script's and the drill's time limits.
 * Not checked when the machine did not come up or has no address to reach.
 */
async function checkApplication(
  ctx: StepContext<DrillJobInput>,
  drill: DrillRun,
  c: CopyContext,
  deadline: number,
  addCheck: (drillId: string, check: DrillCheck) => Promise<void>,
): Promise<void> {
  const { name, timeoutSeconds } = ctx.input.checks.script!;
  const startedAt = isoNow(c.vault.clock);
  const record = (result: DrillCheck['result'], summary: string, output: string | null, durationMs = 0) =>
    addCheck(drill.id, {
      kind: 'application',
      name: `script ${name}`,
      result,
      summary,
      evidence: output,
      evidenceIsScriptOutput: output !== null,
      startedAt,
      durationMs,
    });
  const booted = (drill.machines[0]?.checks ?? []).some((k) => k.kind === 'boot' && k.result === 'passed');
  const ip = c.machine.recoverySettings.nics.map((n) => n.ip).find((i) => i.mode === 'static');
  const probeAddress = ip?.mode === 'static' ? drillProbeAddress(ip.address, ip.prefixLength) : null;
  const skip = !booted
    ? 'the machine did not come up'
    : ip?.mode !== 'static'
      ? `machine '${c.machine.name}' has no static IPv4 address in its recovery settings for the script to reach`
      : probeAddress === null
        ? `the drill machine's subnet ${ip.address}/${ip.prefixLength} has no address left for the script`
        : null;
  if (skip !== null || ip?.mode !== 'static' || probeAddress === null) {
    await record('not-checked', skip ?? 'not checked', null);
    ctx.progress(100, `not checked: ${skip}`);
    return;
  }
  const copy = copyOf(drill);
  const script = await c.vault.scripts.registry.load(name).catch((e: unknown) => e as Error);
  if (script instanceof Error) {
    await record('failed', script.message, null);
    ctx.progress(100, script.message);
    return;
  }
  const timeoutMs = Math.max(1, Math.min(timeoutSeconds * 1000, deadline - Date.now()));
  ctx.progress(
    0,
    `running '${name}' from ${probeAddress} against ${ip.address} on ${copy.network} (time limit ${Math.ceil(timeoutMs / 1000)} s)`,
  );
  const machineCopy = drill.machines[0]!;
  const request: NetworkProbeRequest = {
    network: copy.network,
    script: { name, contentBase64: script.content.toString('base64'), sha256: script.sha256 },
    env: {
      HAVEN_DRILL_ADDRESS: ip.address,
      HAVEN_MACHINE: c.machine.name,
      HAVEN_MACHINE_ID: c.machine.id,
      HAVEN_POINT_TIME: machineCopy.point?.time ?? '',
      HAVEN_OPERATION: 'drill',
      HAVEN_DRILL_ID: drill.id,
    },
    timeoutMs,
    probeAddress,
    user: c.vault.scripts.user,
  };
  // Past the host's usual call limit when the script may run longer: the host kills it at timeoutMs.
  const result = (await c.vault.hosts.call(copy.hostId, 'network.runProbe', request, {
    timeoutMs: timeoutMs + 30_000,
  })) as NetworkProbeResult;
  const seconds = (result.durationMs / 1000).toFixed(1);
  const passed = result.exitCode === 0 && !result.timedOut;
  const summary = passed
    ? `exit 0 after ${seconds} s as ${result.runAs}`
    : result.timedOut
      ? `killed at its time limit of ${Math.ceil(timeoutMs / 1000)} s`
      : result.exitCode === null
        ? `ended by ${result.signal} after ${seconds} s`
        : `exit ${result.exitCode} after ${seconds} s as ${result.runAs}`;
  await record(passed ? 'passed' : 'failed', summary, result.output, result.durationMs);
  ctx.progress(100, summary);
}

function copyOf(drill: DrillRun): DrillCopy {
  const copy = drill.machines[0]?.copy;
  if (!copy) throw new HavenError('internal', `drill ${drill.id} has no overlay yet`);
  return copy;
}

async function saveCopy(vault: VaultContext, drillId: string, copy: DrillCopy): Promise<void> {
  const run = await vault.store.drillRuns.get(drillId);
  if (!run) throw notFound('drill', drillId);
  await vault.store.drillRuns.update({ ...run, machines: run.machines.map((m) => ({ ...m, copy })) });
}

/**
 * Removes what a drill made at its recovery host and says so only once the
 * host confirms it: the machine is gone from the hypervisor and the overlay is
 * closed. Safe to repeat; throws (leaving the run not cleaned up) when the
 * host cannot be reached, so it is tried again later.
 */
export async function cleanUpDrill(vault: VaultContext, drill: DrillRun): Promise<void> {
  for (const copy of drill.machines.flatMap((m) => (m.copy === null ? [] : [m.copy]))) {
    const host = hostServices(vault, copy.hostId);
    if (!vault.hosts.isConnected(copy.hostId)) {
      throw new HavenError(
        'unreachable',
        `the recovery host of drill ${drill.id} is not connected; clean-up is retried`,
        {
          hostId: copy.hostId,
        },
      );
    }
    await removeCopy({ host: () => host }, copy).catch((e: unknown) => {
      if (!(e instanceof HavenError && e.code === 'not_found')) throw e;
    });
    const status = await host.hypervisor
      .status({ name: copy.vmName })
      .catch(() => ({ state: 'absent' as const }));
    if (status.state !== 'absent') {
      throw new HavenError(
        'internal',
        `drill machine ${copy.vmName} is still ${status.state} after its removal`,
        {
          vmName: copy.vmName,
        },
      );
    }
    const stillOpen = await host.replica
      .viewInfo({ viewId: copy.viewId })
      .then(() => true)
      .catch((e: unknown) => !(e instanceof HavenError && e.code === 'not_found'));
    if (stillOpen) {
      throw new HavenError('internal', `drill overlay ${copy.viewId} is still open after its removal`, {
        viewId: copy.viewId,
      });
    }
  }
  const run = await vault.store.drillRuns.get(drill.id);
  if (run)
    await vault.store.drillRuns.update({
      ...run,
      machines: run.machines.map((m) => ({ ...m, cleanedUp: true })),
    });
}
