import { isoNow } from '../../clock/index.ts';
import { isReplicating, type LifecycleOperation, type Transition } from '../../domain/index.ts';
import type { Host, Machine } from '../../domain/model.ts';
import { HavenError, notFound } from '../../errors/index.ts';
import type { HostServices, ReplicationStatus, ReplicationTarget } from '../../host/host-services.ts';
import { defineJob, type JobDefinition, type JobOutcome, type StepContext } from '../../job-engine/index.ts';
import { hostServices } from '../host-call.ts';
import type { VaultContext } from '../vault-context.ts';
import type { LifecycleJobInput } from './job-inputs.ts';

/** What a lifecycle step gets: the vault, the machine as it is now, and its hosts' services. */
export interface LifecycleStepContext<O extends LifecycleOperation = LifecycleOperation>
  extends StepContext<LifecycleJobInput<O>> {
  vault: VaultContext;
  machine: Machine;
  transition: Transition;
  host(hostId: string): HostServices;
  /** Re-reads the machine (after a step changed it). */
  reload(): Promise<Machine>;
  /** Saves fields of the machine other than its state (the job owns it meanwhile). */
  save(patch: Partial<Omit<Machine, 'state' | 'currentJobId'>>): Promise<Machine>;
}

export interface LifecycleStep<O extends LifecycleOperation = LifecycleOperation> {
  name: string;
  title: string;
  retrySafe: boolean;
  pointOfNoReturn?: boolean;
  weight?: number;
  /**
   * The hosts this step talks to (default: the machine's active host and its
   * recovery host). A job carried over from before a vault restart waits for
   * them to reconnect before the step runs.
   */
  hosts?(machine: Machine, input: LifecycleJobInput<O>): Array<string | null>;
  run(ctx: LifecycleStepContext<O>): Promise<void>;
}

/** How long a carried-over job waits for a host to reconnect unless the vault says otherwise. */
export const DEFAULT_HOST_RECONNECT_WAIT_MS = 60_000;

/** For steps that work at the replica's host only (an unplanned failover goes on without its source). */
export const replicaHostOnly = (machine: Machine): Array<string | null> => [machine.recoveryHostId];

export interface LifecycleJobSpec<O extends LifecycleOperation> {
  operation: O;
  // Inferred from `operation` only: steps shared by several operations are typed for any of them.
  steps(input: LifecycleJobInput<NoInfer<O>>): LifecycleStep<NoInfer<O>>[];
  /** Extra work when the job ends (after the state moves), e.g. record what changed; must be idempotent. */
  onSettled?(
    vault: VaultContext,
    machine: Machine,
    outcome: JobOutcome,
    input: LifecycleJobInput<NoInfer<O>>,
  ): Promise<void>;
  /** Machine fields set on success (besides the state), from the job's input and what its steps recorded. */
  onSuccess?(
    machine: Machine,
    input: LifecycleJobInput<NoInfer<O>>,
    output: Record<string, unknown>,
  ): Partial<Omit<Machine, 'state' | 'currentJobId'>>;
}

/** Where a host receives replication: its address and the certificate its peers pin (SPEC §6). */
export function replicationTarget(host: Host): ReplicationTarget {
  if (!host.replicationAddress || !host.replicationFingerprint) {
    throw new HavenError(
      'not_available',
      `host '${host.name}' has not reported a replication endpoint; restart its host agent`,
      { hostId: host.id },
    );
  }
  return { hostId: host.id, address: host.replicationAddress, fingerprint: host.replicationFingerprint };
}

/**
 * A lifecycle operation as a job: its steps see the machine and its hosts,
 * and when the job ends the machine leaves its in-progress state — to the
 * transition's target on success, back to where it started otherwise
 * (lifecycle.ts: every step is retry-safe, so the operator runs it again).
 */
export function lifecycleJob<O extends LifecycleOperation>(
  vault: () => VaultContext,
  spec: LifecycleJobSpec<O>,
): JobDefinition<O, LifecycleJobInput<O>> {
  const load = async (machineId: string) => {
    const machine = await vault().store.machines.get(machineId);
    if (!machine) throw notFound('machine', machineId);
    return machine;
  };
  return defineJob({
    kind: spec.operation,
    steps: (input) =>
      spec.steps(input).map((step) => ({
        name: step.name,
        title: step.title,
        retrySafe: step.retrySafe,
        ...(step.pointOfNoReturn ? { pointOfNoReturn: true } : {}),
        ...(step.weight ? { weight: step.weight } : {}),
        run: async (ctx) => {
          const v = vault();
          const { machineId } = input;
          let machine = await load(machineId);
          if (ctx.carriedOver) {
            const wanted = step.hosts?.(machine, input) ?? [
              machine.activeHostId,
              machine.recoveryHostId ?? ('recoveryHostId' in input ? String(input.recoveryHostId) : null),
            ];
            await waitForHosts(v, ctx, wanted);
            machine = await load(machineId);
          }
          await step.run({
            ...ctx,
            progress: ctx.progress,
            output: ctx.output,
            vault: v,
            machine,
            transition: input.transition,
            host: (hostId) => hostServices(v, hostId),
            reload: async () => {
              machine = await load(machineId);
              return machine;
            },
            save: async (patch) => {
              const current = await load(machineId);
              machine = { ...current, ...patch, updatedAt: isoNow(v.clock) };
              await v.store.machines.update(machine);
              return machine;
            },
          });
        },
      })),
    settle: async ({ input, outcome, job }) => {
      const v = vault();
      const { transition } = input;
      const machine = await load(input.machineId);
      if (machine.state === transition.via) {
        const patch = outcome === 'succeeded' ? spec.onSuccess?.(machine, input, job.output) : undefined;
        const after = { ...machine, ...patch };
        if (patch) await v.store.machines.update({ ...after, updatedAt: isoNow(v.clock) });
        const target = outcome === 'succeeded' ? transition.to : transition.from;
        const moved = await v.store.machines.transition(
          machine.id,
          transition.via,
          target,
          null,
          isoNow(v.clock),
        );
        if (!moved)
          throw new HavenError('conflict', `machine '${machine.name}' changed state while its job ended`);
        if (
          outcome === 'succeeded' &&
          (!isReplicating(target) ||
            after.activeHostId !== machine.activeHostId ||
            after.recoveryHostId !== machine.recoveryHostId)
        ) {
          // The last status was of the replication before this operation: until the monitor asks again, nothing is known.
          await v.store.machines.recordReplication(machine.id, null, 'unknown');
        }
      }
      await spec.onSettled?.(v, await load(machine.id), outcome, input);
    },
  });
}

/**
 * After a vault restart the hosts reconnect on their own schedule: a job
 * carried over waits (bounded) for each host its step needs, saying which,
 * instead of failing "unreachable" because it ran first.
 */
export async function waitForHosts(
  vault: VaultContext,
  ctx: Pick<StepContext, 'progress' | 'signal'>,
  hostIdsOrNames: Array<string | null>,
  /** What the operator reads happens next when a host stays away. */
  whatNext = 'start its agent and run the operation again',
): Promise<void> {
  const waitMs = vault.hostReconnectWaitMs ?? DEFAULT_HOST_RECONNECT_WAIT_MS;
  const deadline = Date.now() + waitMs;
  for (const idOrName of new Set(hostIdsOrNames)) {
    if (idOrName === null) continue;
    const host: Host | undefined =
      (await vault.store.hosts.get(idOrName)) ?? (await vault.store.hosts.getByName(idOrName));
    if (!host || vault.hosts.isConnected(host.id)) continue;
    ctx.progress(
      0,
      `waiting for host '${host.name}' to reconnect after the vault restart (up to ${waitMs / 1000} s)`,
    );
    while (!vault.hosts.isConnected(host.id)) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      if (Date.now() > deadline) {
        throw new HavenError(
          'unreachable',
          `host '${host.name}' did not reconnect within ${waitMs / 1000} s of the vault restart; ${whatNext}`,
          { hostId: host.id, waitedMs: waitMs },
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    ctx.progress(0, `host '${host.name}' reconnected`);
  }
}

/** Waits, polling `probe`, until it returns a value; honours the job's cancel signal. */
export async function pollUntil<T>(
  ctx: StepContext,
  probe: () => Promise<T | undefined>,
  options: { intervalMs?: number; timeoutMs?: number; what: string },
): Promise<T> {
  const end = options.timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + options.timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (ctx.signal.aborted) throw ctx.signal.reason;
    if (Date.now() > end) throw new HavenError('unreachable', `timed out waiting for ${options.what}`);
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 500));
  }
}

/** How long a replication may stay in error before a job waiting on it gives up. */
export const REPLICATION_ERROR_GIVE_UP_MS = 120_000;

/**
 * Tells a replication error the sender retries through (a receiver not
 * listening yet after a restart, a cut link) from one that lasts: `check`
 * throws once the state has been 'error' for longer than `giveUpMs`, naming
 * what the job was waiting for and the last error.
 */
export class ReplicationErrorWatch {
  readonly #what: string;
  readonly #giveUpMs: number;
  #since: number | null = null;

  constructor(what: string, giveUpMs = REPLICATION_ERROR_GIVE_UP_MS) {
    this.#what = what;
    this.#giveUpMs = giveUpMs;
  }

  check(status: ReplicationStatus): void {
    const problem = status.state === 'error' ? status.lastError : mirrorProblem(status);
    if (problem === null && status.state !== 'error') {
      this.#since = null;
      return;
    }
    this.#since ??= Date.now();
    if (Date.now() - this.#since > this.#giveUpMs) {
      throw new HavenError(
        'unreachable',
        `replication failed for ${this.#giveUpMs / 1000} s during ${this.#what}: ${problem}`,
        { lastError: problem },
      );
    }
  }
}

/** A mirrored machine's disk that QEMU does not mirror now (not while copying or with the domain off): why. */
export function mirrorProblem(status: ReplicationStatus): string | null {
  const disk = status.mirror?.disks.find((d) => d.state === 'not-armed' && d.problem !== null);
  return disk ? `disk ${disk.diskId} (${disk.target}) is not mirrored: ${disk.problem}` : null;
}

/** One of the machine's hosts, connected now; refused naming it when it is gone or away. */
export async function connectedHost(ctx: LifecycleStepContext, hostId: string): Promise<Host> {
  const host = await ctx.vault.store.hosts.get(hostId);
  if (!host)
    throw new HavenError('not_found', `host '${hostId}' of machine '${ctx.machine.name}' no longer exists`);
  if (!ctx.vault.hosts.isConnected(host.id)) {
    throw new HavenError(
      'unreachable',
      `host '${host.name}' is not connected to the vault; start its agent and retry`,
      {
        hostId: host.id,
      },
    );
  }
  return host;
}
