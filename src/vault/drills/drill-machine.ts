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
  drillRunChecks,
} from '../../domain/drill.ts';
import type { Machine, RecoveryPoint } from '../../domain/model.ts';
import { completeGroupCuts, selectGroupRecoveryPoint } from '../../domain/recovery-point-selection.ts';
import { HavenError, notFound } from '../../errors/index.ts';
import type { FilesystemCheckReport } from '../../host/host-services.ts';
import type { NetworkProbeRequest, NetworkProbeResult } from '../../host/index.ts';
import type { SettleContext, StepContext, StepDefinition } from '../../job-engine/index.ts';
import { hostServices } from '../host-call.ts';
import { waitForHosts } from '../jobs/lifecycle-job.ts';
import { type CopyContext, copyDefinition, defineAndStart, removeCopy } from '../jobs/machine-copy.ts';
import { requireReplicaHost } from '../replica-host.ts';
import type { VaultContext } from '../vault-context.ts';
import { drillAlerts } from './drill-alerts.ts';
import type { DrillSettings } from './drill-job-input.ts';

/**
 * What a drill does with each of its machines, for the drill of one machine
 * and the drill of a plan alike: choose the point and hold it in a
 * copy-on-write overlay (production replication goes on untouched), check
 * its filesystems, boot it on the isolated test network, run the
 * application check, record each check with its evidence, and remove the
 * drill machine and its overlay — always: when a check fails, when the time
 * limit is reached, when it is cancelled, and after a vault restart (then
 * the drill counts as interrupted, never as proof).
 */

/** The longest a filesystem check of one machine may take (within the drill's own time limit). */
const FILESYSTEM_CHECK_MS = 10 * 60_000;
/** Console lines kept as the boot check's evidence. */
const EVIDENCE_LINES = 20;
/** How much of the console the boot check reads each time it looks. */
const CONSOLE_TAIL = 400;

/** A step of a drill at work: the vault, the drill's settings and run, and the step's progress. */
export interface DrillWork {
  vault: VaultContext;
  settings: DrillSettings;
  /** The run as the step began. */
  run: DrillRun;
  progress: (percent: number, message: string) => void;
  signal: AbortSignal;
}

/** When the drill's time is up, from its start. */
export function drillDeadline(settings: Pick<DrillSettings, 'timeLimitSeconds'>, run: DrillRun): number {
  return Date.parse(run.startedAt ?? run.createdAt) + settings.timeLimitSeconds * 1000;
}

// The machines of a plan's group are drilled together: their changes to the one run are applied one after another.
const runWrites = new Map<string, Promise<unknown>>();

/** Changes a drill run as read now; changes of one run in this vault never overwrite each other. */
export function changeDrillRun(
  vault: VaultContext,
  drillId: string,
  change: (run: DrillRun) => DrillRun,
): Promise<DrillRun> {
  const write = (runWrites.get(drillId) ?? Promise.resolve())
    .catch(() => undefined)
    .then(async () => {
      const run = await vault.store.drillRuns.get(drillId);
      if (!run) throw notFound('drill', drillId);
      const changed = change(run);
      await vault.store.drillRuns.update(changed);
      return changed;
    });
  runWrites.set(drillId, write);
  void write
    .finally(() => {
      if (runWrites.get(drillId) === write) runWrites.delete(drillId);
    })
    .catch(() => undefined);
  return write;
}

function changeMachine(
  vault: VaultContext,
  drillId: string,
  machineId: string,
  change: (m: DrillMachineResult) => DrillMachineResult,
): Promise<DrillRun> {
  return changeDrillRun(vault, drillId, (run) => ({
    ...run,
    machines: run.machines.map((m) => (m.machineId === machineId ? change(m) : m)),
  }));
}

/** Records a check of one machine of the drill, or of the run as a whole (machineId null). */
export function addDrillCheck(
  vault: VaultContext,
  drillId: string,
  machineId: string | null,
  check: DrillCheck,
): Promise<DrillRun> {
  return machineId === null
    ? changeDrillRun(vault, drillId, (run) => ({ ...run, checks: [...run.checks, check] }))
    : changeMachine(vault, drillId, machineId, (m) => ({ ...m, checks: [...m.checks, check] }));
}

/** What a drill job's step does, given the drill at work. */
export type DrillStepRun<I extends DrillSettings> = (ctx: StepContext<I>, work: DrillWork) => Promise<void>;

/**
 * A step of a drill job: a drill is proof only when it ran through in one
 * go, so after a vault restart the step marks it interrupted and fails (the
 * settle cleans up); past the drill's time limit it fails likewise.
 */
export function drillStep<I extends DrillSettings>(
  vault: () => VaultContext,
  step: { name: string; title: string; weight?: number },
  run: DrillStepRun<I>,
): StepDefinition<I> {
  return {
    ...step,
    retrySafe: true,
    run: async (ctx) => {
      const v = vault();
      const drill = await v.store.drillRuns.get(ctx.input.drillId);
      if (!drill) throw notFound('drill', ctx.input.drillId);
      if (ctx.carriedOver) throw await interrupted(v, ctx, drill);
      if (v.clock.now().getTime() > drillDeadline(ctx.input, drill)) {
        throw new HavenError(
          'limit_exceeded',
          `the drill's time limit of ${ctx.input.timeLimitSeconds} s was reached; its machines and overlays are removed`,
          { drillId: drill.id, timeLimitSeconds: ctx.input.timeLimitSeconds },
        );
      }
      await run(ctx, {
        vault: v,
        settings: ctx.input,
        run: drill,
        progress: (percent, message) => ctx.progress(percent, message),
        signal: ctx.signal,
      });
    },
  };
}

/** The machine a drill step works on. */
export async function drillMachineOf(vault: VaultContext, machineId: string): Promise<Machine> {
  const machine = await vault.store.machines.get(machineId);
  if (!machine) throw notFound('machine', machineId);
  return machine;
}

const copyContext = (vault: VaultContext, machine: Machine): CopyContext => ({
  vault,
  machine,
  host: (hostId) => hostServices(vault, hostId),
});

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

type DrilledMachine = Pick<Machine, 'id' | 'name' | 'groupId'>;

/**
 * The points a drill boots, by machine id (null: none of that kind). Each
 * machine its own, except the members of a consistency group drilled
 * together (two or more in one drill): they boot one multi-machine point,
 * shared by every member of the group (`groupMembers`), so the drill proves
 * what a failover of them would start from — the newest such point of the
 * kind asked for, or a random retained one.
 */
export function chooseDrillPoints(
  catalog: readonly RecoveryPoint[],
  machines: readonly DrilledMachine[],
  groupMembers: ReadonlyMap<string, readonly DrilledMachine[]>,
  choice: DrillPointChoice,
  random: (n: number) => number = randomInt,
): Map<string, RecoveryPoint | null> {
  const chosen = new Map<string, RecoveryPoint | null>();
  const drilledOf = (groupId: string) => machines.filter((m) => m.groupId === groupId).length;
  for (const machine of machines) {
    if (chosen.has(machine.id)) continue;
    const members = machine.groupId === null ? undefined : groupMembers.get(machine.groupId);
    if (members === undefined || machine.groupId === null || drilledOf(machine.groupId) < 2) {
      chosen.set(
        machine.id,
        chooseDrillPoint(
          catalog.filter((p) => p.machineId === machine.id),
          choice,
          random,
        ),
      );
      continue;
    }
    let points: Map<string, RecoveryPoint> | null = null;
    if (choice === 'random-retained') {
      const cuts = [...completeGroupCuts(catalog, members, false).values()];
      points = cuts.length === 0 ? null : cuts[random(cuts.length)]!;
    } else {
      const option =
        choice === 'latest-app-consistent'
          ? 'latest-multi-machine-app-consistent'
          : 'latest-multi-machine-processed';
      try {
        points = new Map(Object.entries(selectGroupRecoveryPoint(catalog, members, option).points));
      } catch {
        points = null;
      }
    }
    for (const m of machines.filter((d) => d.groupId === machine.groupId)) {
      chosen.set(m.id, points?.get(m.id) ?? null);
    }
  }
  return chosen;
}

/** Reads the replicas' catalogs and chooses the drill's points (see chooseDrillPoints); refuses when a machine has none. */
export async function drillPointsFor(
  vault: VaultContext,
  machines: readonly Machine[],
  choice: DrillPointChoice,
): Promise<Map<string, RecoveryPoint>> {
  const groupIds = new Set(machines.flatMap((m) => (m.groupId === null ? [] : [m.groupId])));
  const all = groupIds.size === 0 ? [] : await vault.store.machines.list();
  const groupMembers = new Map([...groupIds].map((g) => [g, all.filter((m) => m.groupId === g)] as const));
  const catalogOf = new Set([...machines, ...[...groupMembers.values()].flat()]);
  const byId = new Map([...catalogOf].map((m) => [m.id, m]));
  const catalog = (
    await Promise.all(
      [...byId.values()].map((m) =>
        hostServices(vault, requireReplicaHost(m)).replica.listPoints({ machineId: m.id }),
      ),
    )
  ).flat();
  const chosen = chooseDrillPoints(catalog, machines, groupMembers, choice);
  const points = new Map<string, RecoveryPoint>();
  for (const machine of machines) {
    const point = chosen.get(machine.id) ?? null;
    if (point === null) {
      const together =
        machine.groupId !== null && machines.filter((m) => m.groupId === machine.groupId).length > 1;
      throw new HavenError(
        'not_available',
        `machine '${machine.name}' has no ${choice.replace(/-/g, ' ')} point to drill${together ? ' shared by every machine of its consistency group' : ''}`,
        { machineId: machine.id, point: choice },
      );
    }
    points.set(machine.id, point);
  }
  return points;
}

/** Opens the drill's overlay of the point (which holds the point against retention) and records it with the run. */
export async function openDrillCopy(work: DrillWork, machine: Machine, point: RecoveryPoint): Promise<void> {
  const { vault, settings, run } = work;
  const hostId = requireReplicaHost(machine);
  const names = drillCopyNames(run.id, machine);
  const host = await vault.store.hosts.get(hostId);
  const site = host ? await vault.store.sites.get(host.siteId) : undefined;
  const network = settings.testNetwork ?? site?.testNetwork ?? 'haven-test';
  const copy: DrillCopy = { hostId, viewId: names.viewId, vmName: names.vmName, network };
  // Recorded before it is made: a vault that dies right after the host opened it still removes it.
  await changeMachine(vault, run.id, machine.id, (m) => ({ ...m, copy }));
  await hostServices(vault, hostId).replica.openView({
    machineId: machine.id,
    pointId: point.id,
    writable: true,
    viewId: names.viewId,
  });
  const chosen: DrillPoint = { id: point.id, time: point.time, type: point.type };
  await changeMachine(vault, run.id, machine.id, (m) => ({ ...m, point: chosen }));
  work.progress(
    100,
    `${machine.name}: ${point.type} point of ${point.time} (${settings.point}), held by overlay ${names.viewId}`,
  );
}

/** The machine's part of the run, as recorded now. */
async function machineResult(work: DrillWork, machineId: string): Promise<DrillMachineResult> {
  const run = await work.vault.store.drillRuns.get(work.run.id);
  const result = run?.machines.find((m) => m.machineId === machineId);
  if (!result) throw new HavenError('internal', `drill ${work.run.id} has no machine ${machineId}`);
  return result;
}

async function copyOf(work: DrillWork, machine: Machine): Promise<DrillCopy> {
  const copy = (await machineResult(work, machine.id)).copy;
  if (!copy) {
    throw new HavenError('internal', `drill ${work.run.id} has no overlay of machine '${machine.name}' yet`);
  }
  return copy;
}

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

/** Checks every filesystem of the machine's overlay on the recovery host, before it boots (nothing may run from it meanwhile). */
export async function checkDrillFilesystems(work: DrillWork, machine: Machine): Promise<void> {
  const { vault } = work;
  const copy = await copyOf(work, machine);
  const startedAt = isoNow(vault.clock);
  const timeoutMs = Math.max(
    1000,
    Math.min(FILESYSTEM_CHECK_MS, drillDeadline(work.settings, work.run) - Date.now()),
  );
  work.progress(
    0,
    `${machine.name}: checking the filesystems of ${copy.viewId} (up to ${Math.round(timeoutMs / 1000)} s)`,
  );
  const report = await hostServices(vault, copy.hostId).replica.checkFilesystems({
    viewId: copy.viewId,
    timeoutMs,
  });
  const checks = filesystemChecks(report, startedAt);
  for (const check of checks) await addDrillCheck(vault, work.run.id, machine.id, check);
  const failed = checks.filter((x) => x.result === 'failed').length;
  const notChecked = checks.filter((x) => x.result === 'not-checked').length;
  work.progress(
    100,
    `${machine.name}: ${checks.length} filesystem${checks.length === 1 ? '' : 's'}: ${failed} failed, ${notChecked} not checked`,
  );
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

/**
 * Boots the machine's overlay on the isolated test network and waits for its
 * boot check; its RTO counts from the drill's start. Returns whether it came up.
 */
export async function bootDrillMachine(work: DrillWork, machine: Machine): Promise<boolean> {
  const { vault, settings, run } = work;
  const c = copyContext(vault, machine);
  const copy = await copyOf(work, machine);
  const host = hostServices(vault, copy.hostId);
  const view = await host.replica.viewInfo({ viewId: copy.viewId });
  const definition = await copyDefinition(
    c,
    {
      hostId: copy.hostId,
      vmName: copy.vmName,
      disks: view.disks.map((d) => ({ diskId: d.diskId, nbdUri: d.nbdUri })),
    },
    copy.network,
  );
  if (definition.name !== copy.vmName) {
    await changeMachine(vault, run.id, machine.id, (m) => ({
      ...m,
      copy: { ...copy, vmName: definition.name },
    }));
  }
  const startedAt = isoNow(vault.clock);
  await defineAndStart(c, copy.hostId, definition);
  work.progress(10, `${definition.name} started on ${copy.network}; waiting for it to come up`);
  const limitMs = Math.min(settings.boot.timeoutSeconds * 1000, drillDeadline(settings, run) - Date.now());
  const until = Date.now() + Math.max(0, limitMs);
  let result = { up: false, evidence: '' };
  while (!work.signal.aborted) {
    const log = await host.hypervisor
      .consoleLog({ name: definition.name, tail: CONSOLE_TAIL })
      .catch(() => null);
    result = bootCheckResult(log?.lines ?? [], settings.boot);
    if (result.up || Date.now() > until) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  if (work.signal.aborted) throw work.signal.reason;
  const endedAt = Date.now();
  const what =
    settings.boot.consolePattern === null
      ? 'console output'
      : `/${settings.boot.consolePattern}/ on the console`;
  const rtoSeconds = (endedAt - Date.parse(run.startedAt ?? run.createdAt)) / 1000;
  await addDrillCheck(vault, run.id, machine.id, {
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
  if (result.up) await changeMachine(vault, run.id, machine.id, (m) => ({ ...m, rtoSeconds }));
  work.progress(
    100,
    result.up ? `${machine.name} up after ${rtoSeconds.toFixed(1)} s` : `${machine.name} did not come up`,
  );
  return result.up;
}

/**
 * The application check: the drill's registered script, run by the recovery
 * host inside the drill's isolated test network (network.runProbe) with the
 * drill machine's address, within the script's and the drill's time limits.
 * Not checked when the machine did not come up or has no address to reach.
 */
export async function checkDrillApplication(work: DrillWork, machine: Machine): Promise<void> {
  const { vault, settings, run: drill } = work;
  if (settings.checks.script === null) return;
  const { name, timeoutSeconds } = settings.checks.script;
  const startedAt = isoNow(vault.clock);
  const record = (result: DrillCheck['result'], summary: string, output: string | null, durationMs = 0) =>
    addDrillCheck(vault, drill.id, machine.id, {
      kind: 'application',
      name: `script ${name}`,
      result,
      summary,
      evidence: output,
      evidenceIsScriptOutput: output !== null,
      startedAt,
      durationMs,
    });
  const own = await machineResult(work, machine.id);
  const booted = own.checks.some((k) => k.kind === 'boot' && k.result === 'passed');
  const ip = machine.recoverySettings.nics.map((n) => n.ip).find((i) => i.mode === 'static');
  const probeAddress = ip?.mode === 'static' ? drillProbeAddress(ip.address, ip.prefixLength) : null;
  const skip = !booted
    ? 'the machine did not come up'
    : ip?.mode !== 'static'
      ? `machine '${machine.name}' has no static IPv4 address in its recovery settings for the script to reach`
      : probeAddress === null
        ? `the drill machine's subnet ${ip.address}/${ip.prefixLength} has no address left for the script`
        : null;
  if (skip !== null || ip?.mode !== 'static' || probeAddress === null) {
    await record('not-checked', skip ?? 'not checked', null);
    work.progress(100, `${machine.name}: not checked: ${skip}`);
    return;
  }
  const copy = await copyOf(work, machine);
  const script = await vault.scripts.registry.load(name).catch((e: unknown) => e as Error);
  if (script instanceof Error) {
    await record('failed', script.message, null);
    work.progress(100, script.message);
    return;
  }
  const timeoutMs = Math.max(1, Math.min(timeoutSeconds * 1000, drillDeadline(settings, drill) - Date.now()));
  work.progress(
    0,
    `running '${name}' from ${probeAddress} against ${ip.address} (${machine.name}) on ${copy.network} (time limit ${Math.ceil(timeoutMs / 1000)} s)`,
  );
  const request: NetworkProbeRequest = {
    network: copy.network,
    script: { name, contentBase64: script.content.toString('base64'), sha256: script.sha256 },
    env: {
      HAVEN_DRILL_ADDRESS: ip.address,
      HAVEN_MACHINE: machine.name,
      HAVEN_MACHINE_ID: machine.id,
      HAVEN_POINT_TIME: own.point?.time ?? '',
      HAVEN_OPERATION: 'drill',
      HAVEN_DRILL_ID: drill.id,
    },
    timeoutMs,
    probeAddress,
    user: vault.scripts.user,
  };
  // Past the host's usual call limit when the script may run longer: the host kills it at timeoutMs.
  const result = (await vault.hosts.call(copy.hostId, 'network.runProbe', request, {
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
  work.progress(100, `${machine.name}: ${summary}`);
}

/**
 * Removes what a drill made at its recovery hosts and says so only once each
 * host confirms it: every drill machine is gone from the hypervisor and its
 * overlay is closed. Safe to repeat; throws (leaving the run not cleaned up)
 * when a host cannot be reached, so it is tried again later.
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
  await changeDrillRun(vault, drill.id, (run) => ({
    ...run,
    machines: run.machines.map((m) => ({ ...m, cleanedUp: true })),
  }));
}

/**
 * A drill carried over a vault restart: its recovery hosts reconnect on their
 * own schedule (the job runs first), so the drill waits for them (bounded)
 * and removes its machines and overlays here, and only then says they are
 * gone; when a host stays away the reason says so and the scheduler retries.
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
  const what = drill.machines.length > 1 ? 'its machines and overlays' : 'its machine and overlay';
  const reason =
    notRemoved === null
      ? `the vault restarted during the drill; ${what} were removed`
      : `the vault restarted during the drill; ${what} are not removed yet: ${notRemoved}`;
  await changeDrillRun(vault, drill.id, (r) => ({ ...r, state: 'interrupted', reason }));
  return new HavenError('conflict', `drill ${drill.id.slice(0, 8)}: ${reason}`, { drillId: drill.id });
}

/**
 * How every drill job ends: clean up what is left, then record the drill's
 * state — passed only when the job ran through and its checks pass;
 * interrupted after a vault restart; failed, not cancelled, when it ran past
 * its time limit — and raise or clear its alert. `conclude` adds what the
 * whole run shows once its machines are done (a plan drill's order and RTO).
 */
export async function settleDrill(
  vault: VaultContext,
  settings: DrillSettings,
  { outcome, error }: Pick<SettleContext<DrillSettings>, 'outcome' | 'error'>,
  conclude: (run: DrillRun) => Pick<DrillRun, 'checks' | 'rtoSeconds'> = (run) => run,
): Promise<void> {
  const drill = await vault.store.drillRuns.get(settings.drillId);
  if (!drill) throw notFound('drill', settings.drillId);
  let cleanupError: string | null = null;
  // An interrupted drill has tried its clean-up and says how it went; the scheduler retries what is left.
  if (drill.state !== 'interrupted' && !drill.machines.every((m) => m.cleanedUp)) {
    cleanupError = await cleanUpDrill(vault, drill).then(
      () => null,
      (e: unknown) => (e instanceof Error ? e.message : String(e)),
    );
  }
  await changeDrillRun(vault, drill.id, (after) => {
    const concluded = { ...after, ...conclude(after) };
    const checks = drillRunChecks(concluded);
    // Cancelled for its time limit (by the scheduler, when a step hung): a failure, not an operator's choice.
    const timedOut = vault.clock.now().getTime() > drillDeadline(settings, after);
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
    return {
      ...concluded,
      state,
      reason:
        cleanupError === null ? reason : `${reason ?? 'passed'}; clean-up not finished: ${cleanupError}`,
      endedAt: isoNow(vault.clock),
    };
  });
  const ended = await vault.store.drillRuns.get(drill.id);
  if (ended) await drillAlerts(vault).onDrillEnded(ended);
}
