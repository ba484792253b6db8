/**
 * Runs drills by themselves: every due schedule starts its drill once (a
 * compare-and-set on the schedule, so two vaults or two ticks never both
 * start it), within the limits that keep recovery first — at most so many
 * drills per recovery host, and never so many in all that a failover finds
 * no worker. A drill that cannot start now waits (recorded, with the reason)
 * or is skipped (recorded, with the reason). The scheduler also ends what a
 * drill leaves behind: a drill past its time limit is cancelled, a clean-up
 * that did not finish is tried again until the host confirms it, and a
 * target that has gone without a passing drill for too long gets an alert.
 */
import { randomUUID } from 'node:crypto';
import { isoNow } from '../../clock/index.ts';
import { type DrillRun, type DrillSchedule, describeCadence, nextDrillRunAfter } from '../../domain/drill.ts';
import { isTerminalJobState } from '../../domain/job-states.ts';
import {
  IN_PROGRESS_STATES,
  type Machine,
  type MachineState,
  type RecoveryPlan,
} from '../../domain/model.ts';
import { vaultJobInput } from '../jobs/job-inputs.ts';
import type { VaultContext } from '../vault-context.ts';
import { drillAlerts } from './drill-alerts.ts';
import { cancelDrill } from './drill-conflicts.ts';
import { cleanUpDrill } from './drill-machine.ts';
import { PLAN_DRILL_JOB_KIND } from './plan-drill-steps.ts';
import { requestMachineDrill, requestPlanDrill } from './request-drill.ts';

export interface DrillSchedulerOptions {
  /** How often the schedules are looked at, default 5 s. */
  tickMs?: number;
  /**
   * How long past its time limit a drill may still run before the scheduler
   * cancels it (the job checks its limit itself between steps; this ends a
   * step that hangs), default 30 s.
   */
  timeLimitGraceMs?: number;
  /** Alert when a scheduled machine or plan has had no passing drill for longer, default 7 days. */
  maxAgeWithoutPassMs?: number;
}

export const DEFAULT_MAX_AGE_WITHOUT_PASS_MS = 7 * 86_400_000;

/** Jobs of the engine kept free of drills, so a failover (and its clean-up) always finds a worker. */
const WORKERS_KEPT_FOR_RECOVERY = 2;

/** States of a machine busy with a test failover an operator started. */
const IN_TEST_FAILOVER: ReadonlySet<MachineState> = new Set([
  'starting-test-failover',
  'test-failover-active',
  'cleaning-up-test-failover',
]);
/** A machine in another operation (every in-progress state): a drill waits for it or is skipped, per its schedule. */
const BUSY: ReadonlySet<MachineState> = new Set(IN_PROGRESS_STATES);

/** What a due drill can do now. */
type Decision = { start: true } | { wait: string } | { skip: string };

/** The drills running now, counted as the limits count them: per host, each drill machine (a plan drill has several). */
interface Load {
  total: number;
  perHost: Map<string, number>;
  machinesInDrill: Map<string, DrillRun>;
}

/** How many of the machines each recovery host would run. */
function machinesPerHost(machines: readonly Machine[]): Map<string, number> {
  const count = new Map<string, number>();
  for (const m of machines) {
    if (m.recoveryHostId !== null) count.set(m.recoveryHostId, (count.get(m.recoveryHostId) ?? 0) + 1);
  }
  return count;
}

export class DrillScheduler {
  readonly #vault: VaultContext;
  readonly #tickMs: number;
  readonly #graceMs: number;
  readonly #maxAgeMs: number;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;

  constructor(vault: VaultContext, options: DrillSchedulerOptions = {}) {
    this.#vault = vault;
    this.#tickMs = options.tickMs ?? 5000;
    this.#graceMs = options.timeLimitGraceMs ?? 30_000;
    this.#maxAgeMs = options.maxAgeWithoutPassMs ?? DEFAULT_MAX_AGE_WITHOUT_PASS_MS;
  }

  /** At most this many drills run at once in the whole vault. */
  get maxDrillsInAll(): number {
    return Math.max(1, this.#vault.engine.concurrency - WORKERS_KEPT_FOR_RECOVERY);
  }

  start(): void {
    // A failed look (the store briefly away, a host not answering) is retried at the next tick.
    this.#timer ??= setInterval(() => void this.runOnce().catch(() => undefined), this.#tickMs);
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#running?.catch(() => undefined);
  }

  /** One look: what the timer does each tick (tests call it with a clock they move). */
  runOnce(): Promise<void> {
    this.#running ??= this.#run().finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  async #run(): Promise<void> {
    await this.#endOrphans();
    await this.#enforceTimeLimits();
    await this.#retryCleanUps();
    const machines = new Map((await this.#vault.store.machines.list()).map((m) => [m.id, m]));
    const load = await this.#load(machines);
    await this.#startWaiting(machines, load);
    await this.#takeDue(machines, load);
    await this.#checkOverdue(machines);
  }

  #now(): number {
    return this.#vault.clock.now().getTime();
  }

  /** Running drills whose job ended without recording it (the vault stopped in its settle, a failed submit). */
  async #endOrphans(): Promise<void> {
    const { store } = this.#vault;
    for (const run of await store.drillRuns.list({ states: ['running'], limit: 1000 })) {
      const job = run.jobId === null ? undefined : await store.jobs.get(run.jobId);
      if (job && !isTerminalJobState(job.state)) continue;
      // Read again: the job's settle may have ended it since the list.
      const current = await store.drillRuns.get(run.id);
      if (current?.state !== 'running') continue;
      const ended: DrillRun = {
        ...current,
        state: 'interrupted',
        reason: job
          ? `its job ${job.id.slice(0, 8)} ${job.state} without recording the drill's end`
          : 'its job was never started',
        endedAt: isoNow(this.#vault.clock),
      };
      await store.drillRuns.update(ended);
      await drillAlerts(this.#vault).onDrillEnded(ended);
    }
  }

  /** A drill whose step hangs past its time limit is cancelled, the reason recorded first; its settle cleans up. */
  async #enforceTimeLimits(): Promise<void> {
    const { store } = this.#vault;
    const now = this.#now();
    for (const run of await store.drillRuns.list({ states: ['running'], limit: 1000 })) {
      if (run.jobId === null) continue;
      const job = await store.jobs.get(run.jobId);
      const schedule = run.scheduleId === null ? undefined : await store.drillSchedules.get(run.scheduleId);
      const limitSeconds =
        (job ? (vaultJobInput(job, 'drill') ?? vaultJobInput(job, PLAN_DRILL_JOB_KIND)) : null)
          ?.timeLimitSeconds ?? schedule?.timeLimitSeconds;
      if (limitSeconds === undefined) continue;
      const started = Date.parse(run.startedAt ?? run.createdAt);
      if (now <= started + limitSeconds * 1000 + this.#graceMs) continue;
      await cancelDrill(this.#vault, run, `time limit reached: the drill ran longer than ${limitSeconds} s`);
    }
  }

  /** Ended drills whose machine or overlay the host did not confirm gone: tried again until it does. */
  async #retryCleanUps(): Promise<void> {
    const { store } = this.#vault;
    const ended = await store.drillRuns.list({
      states: ['passed', 'failed', 'interrupted', 'cancelled'],
      limit: 1000,
    });
    for (const run of ended) {
      if (run.machines.every((m) => m.cleanedUp)) continue;
      try {
        await cleanUpDrill(this.#vault, run);
      } catch {
        continue; // The host is away or still holds it: the next tick tries again.
      }
      const cleaned = await store.drillRuns.get(run.id);
      if (!cleaned) continue;
      const at = isoNow(this.#vault.clock);
      await store.drillRuns.update({
        ...cleaned,
        reason: `${cleaned.reason ?? cleaned.state}; cleaned up at ${at}`,
      });
    }
  }

  async #load(machines: ReadonlyMap<string, Machine>): Promise<Load> {
    const load: Load = { total: 0, perHost: new Map(), machinesInDrill: new Map() };
    for (const run of await this.#vault.store.drillRuns.list({ states: ['running'], limit: 1000 })) {
      load.total++;
      for (const m of run.machines) {
        load.machinesInDrill.set(m.machineId, run);
        const hostId = m.copy?.hostId ?? machines.get(m.machineId)?.recoveryHostId ?? null;
        if (hostId !== null) load.perHost.set(hostId, (load.perHost.get(hostId) ?? 0) + 1);
      }
    }
    return load;
  }

  /** The machines a schedule drills, or why it cannot be run at all. */
  async #targetMachines(
    schedule: DrillSchedule,
    machines: ReadonlyMap<string, Machine>,
  ): Promise<{ machines: Machine[]; plan: RecoveryPlan | null } | { skip: string }> {
    const { target } = schedule;
    if (target.kind === 'machine') {
      const machine = machines.get(target.machineId);
      return machine
        ? { machines: [machine], plan: null }
        : { skip: `machine ${target.machineId} does not exist any more` };
    }
    const plan = await this.#vault.store.plans.get(target.planId);
    if (!plan) return { skip: `plan ${target.planId} does not exist any more` };
    const members: Machine[] = [];
    for (const id of plan.groups.flatMap((g) => g.machineIds)) {
      const machine = machines.get(id);
      if (!machine) return { skip: `machine ${id} of plan '${plan.name}' does not exist any more` };
      members.push(machine);
    }
    return { machines: members, plan };
  }

  /** Waiting drills first, oldest first: they were due before anything due now. */
  async #startWaiting(machines: ReadonlyMap<string, Machine>, load: Load): Promise<void> {
    const { store } = this.#vault;
    const waiting = (await store.drillRuns.list({ states: ['waiting'], limit: 1000 })).reverse();
    for (const run of waiting) {
      const schedule = run.scheduleId === null ? undefined : await store.drillSchedules.get(run.scheduleId);
      if (!schedule?.enabled) {
        await this.#end(
          run,
          'skipped',
          `its schedule was ${schedule ? 'disabled' : 'deleted'} while it waited`,
        );
        continue;
      }
      const decision = await this.#decide(schedule, machines, load);
      const waitedMs = this.#now() - Date.parse(run.createdAt);
      if ('wait' in decision && waitedMs > schedule.timeLimitSeconds * 1000) {
        await this.#end(
          run,
          'skipped',
          `still waiting after the schedule's time limit of ${schedule.timeLimitSeconds} s: ${decision.wait}`,
        );
      } else await this.#apply(run, schedule, decision, machines, load);
    }
  }

  /** Due schedules, oldest due first: each claimed, then started, left waiting or skipped. */
  async #takeDue(machines: ReadonlyMap<string, Machine>, load: Load): Promise<void> {
    const { store } = this.#vault;
    const now = this.#now();
    const nowIso = isoNow(this.#vault.clock);
    for (const schedule of await store.drillSchedules.due(nowIso)) {
      const nextRunAt = new Date(nextDrillRunAfter(schedule.cadence, now, now)).toISOString();
      if (
        !(await store.drillSchedules.claimRun(schedule.id, schedule.nextRunAt!, {
          nextRunAt,
          lastRunAt: nowIso,
        }))
      )
        continue; // Another vault, or an earlier tick, started this one.
      const run = await this.#record(schedule, machines);
      const previous = (
        await store.drillRuns.list({ scheduleId: schedule.id, states: ['waiting', 'running'] })
      ).find((r) => r.id !== run.id);
      if (previous) {
        await this.#end(
          run,
          'skipped',
          `drill ${previous.id.slice(0, 8)} of this schedule (due ${previous.createdAt}) is still ${previous.state}`,
        );
        continue;
      }
      await this.#apply(run, schedule, await this.#decide(schedule, machines, load), machines, load);
    }
  }

  /** The run of a due schedule, recorded before anything is decided: every due drill leaves a trace. */
  async #record(schedule: DrillSchedule, machines: ReadonlyMap<string, Machine>): Promise<DrillRun> {
    const machine = schedule.target.kind === 'machine' ? machines.get(schedule.target.machineId) : undefined;
    const now = isoNow(this.#vault.clock);
    const run: DrillRun = {
      id: randomUUID(),
      scheduleId: schedule.id,
      target: schedule.target,
      targetName:
        machine?.name ?? (schedule.target.kind === 'plan' ? schedule.name : schedule.target.machineId),
      jobId: null,
      state: 'waiting',
      reason: `due (${describeCadence(schedule.cadence)})`,
      machines:
        schedule.target.kind === 'machine'
          ? [
              {
                machineId: schedule.target.machineId,
                machineName: machine?.name ?? schedule.target.machineId,
                point: null,
                copy: null,
                rtoSeconds: null,
                checks: [],
                // Nothing made yet, nothing to remove.
                cleanedUp: true,
              },
            ]
          : [],
      rtoSeconds: null,
      checks: [],
      createdBy: `schedule ${schedule.name}`,
      createdAt: now,
      startedAt: null,
      endedAt: null,
    };
    if (schedule.target.kind === 'plan') {
      const plan = await this.#vault.store.plans.get(schedule.target.planId);
      if (plan) run.targetName = plan.name;
    }
    await this.#vault.store.drillRuns.create(run);
    return run;
  }

  /** Whether the schedule's drill can start now, and if not, why (naming the machine and its state, or the limit). */
  async #decide(
    schedule: DrillSchedule,
    machines: ReadonlyMap<string, Machine>,
    load: Load,
  ): Promise<Decision> {
    const target = await this.#targetMachines(schedule, machines);
    if ('skip' in target) return target;
    const conflict = (why: string): Decision =>
      schedule.onConflict === 'wait'
        ? { wait: `${why}; the drill waits for it` }
        : { skip: `${why}; the schedule skips then` };
    const perHost = machinesPerHost(target.machines);
    for (const [hostId, count] of perHost) {
      if (count <= schedule.maxConcurrentPerHost) continue;
      const host = await this.#vault.store.hosts.get(hostId);
      return {
        skip: `plan '${target.plan?.name}' drills ${count} machines on recovery host '${host?.name ?? hostId}', more than the schedule's ${schedule.maxConcurrentPerHost} at once`,
      };
    }
    for (const machine of target.machines) {
      const inDrill = load.machinesInDrill.get(machine.id);
      if (inDrill) {
        return conflict(
          `machine '${machine.name}' is in drill ${inDrill.id.slice(0, 8)} since ${inDrill.startedAt ?? inDrill.createdAt}`,
        );
      }
      if (IN_TEST_FAILOVER.has(machine.state))
        return conflict(`machine '${machine.name}' is in a test failover (${machine.state})`);
      if (BUSY.has(machine.state))
        return conflict(`machine '${machine.name}' is in another operation (${machine.state})`);
      if (machine.state !== 'protected') {
        return { skip: `machine '${machine.name}' is ${machine.state}: drills run on protected machines` };
      }
    }
    if (load.total >= this.maxDrillsInAll) {
      return {
        wait: `the vault runs at most ${this.maxDrillsInAll} drills at once (its job workers less ${WORKERS_KEPT_FOR_RECOVERY} kept for failovers), and ${load.total} run`,
      };
    }
    for (const [hostId, count] of perHost) {
      const onHost = load.perHost.get(hostId) ?? 0;
      if (onHost + count <= schedule.maxConcurrentPerHost) continue;
      const host = await this.#vault.store.hosts.get(hostId);
      return {
        wait: `recovery host '${host?.name ?? hostId}' runs ${onHost} drill machine(s), at most ${schedule.maxConcurrentPerHost} at once for this schedule${count > 1 ? `, and this drill adds ${count}` : ''}`,
      };
    }
    return { start: true };
  }

  async #apply(
    run: DrillRun,
    schedule: DrillSchedule,
    decision: Decision,
    machines: ReadonlyMap<string, Machine>,
    load: Load,
  ): Promise<void> {
    if ('skip' in decision) return this.#end(run, 'skipped', decision.skip);
    if ('wait' in decision) {
      if (run.reason !== decision.wait)
        await this.#vault.store.drillRuns.update({ ...run, reason: decision.wait });
      return;
    }
    try {
      const target = await this.#targetMachines(schedule, machines);
      if ('skip' in target) return this.#end(run, 'skipped', target.skip);
      const request = {
        point: schedule.point,
        testNetwork: schedule.testNetwork,
        checks: schedule.checks,
        timeLimitSeconds: schedule.timeLimitSeconds,
        scheduleId: schedule.id,
        createdBy: run.createdBy,
        waitingRunId: run.id,
      };
      const started = target.plan
        ? await requestPlanDrill(this.#vault, target.plan, request)
        : await requestMachineDrill(this.#vault, target.machines[0]!, request);
      load.total++;
      for (const machine of target.machines) load.machinesInDrill.set(machine.id, started);
      for (const [hostId, count] of machinesPerHost(target.machines)) {
        load.perHost.set(hostId, (load.perHost.get(hostId) ?? 0) + count);
      }
    } catch (error) {
      const current = (await this.#vault.store.drillRuns.get(run.id)) ?? run;
      // The run was not started (its job not submitted): nothing was made, nothing to clean up.
      if (current.state === 'waiting') {
        await this.#end(
          current,
          'skipped',
          `could not start: ${error instanceof Error ? error.message : error}`,
        );
      }
    }
  }

  async #end(run: DrillRun, state: 'skipped', reason: string): Promise<void> {
    await this.#vault.store.drillRuns.update({ ...run, state, reason, endedAt: isoNow(this.#vault.clock) });
  }

  /** Every enabled schedule's target: its last pass, or since when it has been scheduled without one. */
  async #checkOverdue(machines: ReadonlyMap<string, Machine>): Promise<void> {
    const { store } = this.#vault;
    const targets = new Map<
      string,
      { target: DrillSchedule['target']; targetName: string; since: string; lastPassedAt: string | null }
    >();
    for (const schedule of await store.drillSchedules.list()) {
      if (!schedule.enabled) continue;
      const { target } = schedule;
      const key = target.kind === 'machine' ? `machine:${target.machineId}` : `plan:${target.planId}`;
      const known = targets.get(key);
      if (known) {
        if (schedule.createdAt < known.since) known.since = schedule.createdAt;
        continue;
      }
      const proof =
        target.kind === 'machine'
          ? await store.drillRuns.lastProven(target.machineId)
          : await store.drillRuns.lastPassed(target);
      const targetName =
        target.kind === 'machine'
          ? (machines.get(target.machineId)?.name ?? target.machineId)
          : ((await store.plans.get(target.planId))?.name ?? target.planId);
      targets.set(key, {
        target,
        targetName,
        since: schedule.createdAt,
        lastPassedAt: proof?.endedAt ?? null,
      });
    }
    await drillAlerts(this.#vault).checkOverdue([...targets.values()], this.#maxAgeMs);
  }
}
