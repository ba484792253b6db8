import { randomUUID } from 'node:crypto';
import { isoNow } from '../clock/index.ts';
import { isTerminalJobState } from '../domain/job-states.ts';
import { type Machine, type MachineState, outputOutsideSteps, type SourceFence } from '../domain/model.ts';
import { HavenError } from '../errors/index.ts';
import { hostServices } from './host-call.ts';
import { fenceAndVerify } from './jobs/verified-fence.ts';
import { fenceServer } from './servers/index.ts';
import type { VaultContext } from './vault-context.ts';

/**
 * The source a failover could not verify stopped (its host was unreachable,
 * or the fence or its check failed) is fenced by the vault as soon as that
 * host is back, before the host's replication is reconciled, and again on a
 * bounded interval while it stays unverified. The alert stays open, with the
 * machine saying why, until the hypervisor confirms the source off.
 */

export const fenceAlertKey = (machineId: string) => `fence-not-verified:${machineId}`;

/** Raises the machine's fence alert (a no-op while one is open). */
export async function raiseFenceAlert(
  vault: VaultContext,
  machine: Pick<Machine, 'id' | 'name'>,
  message: string,
  at: string,
): Promise<void> {
  await vault.store.alerts.raise({
    id: randomUUID(),
    key: fenceAlertKey(machine.id),
    severity: 'critical',
    message: `Machine '${machine.name}': ${message}`,
    subjectType: 'machine',
    subjectId: machine.id,
    raisedAt: at,
    clearedAt: null,
  });
}

type Unverified = Extract<SourceFence, { verified: false }>;

/** States in which the machine runs, or is being started, away from the host its failover left. */
const AWAY: ReadonlySet<MachineState> = new Set([
  'failing-over',
  'failed-over',
  'changing-recovery-point',
  'failover-committed',
]);

/**
 * The source still to be stopped on `hostId`: left unverified by a failover,
 * while the machine runs (or is being started) elsewhere. A failover that
 * failed before starting its copy left the machine where it was: the source
 * is then the machine itself and is not stopped. Once the machine is on its
 * way back (reprotect checked the original machine off), neither.
 */
export function sourceLeftOn(machine: Machine, hostId: string): Unverified | null {
  const fence = machine.sourceFence;
  if (!fence || fence.verified || fence.hostId !== hostId) return null;
  const away =
    AWAY.has(machine.state) ||
    (machine.state === 'committing' && machine.activeHostId !== hostId) ||
    (machine.state === 'protected' && machine.runtime.failover !== null);
  return away ? fence : null;
}

/** How often a source that could not be verified stopped is fenced again while its host is connected. */
export const SOURCE_FENCE_RETRY_MS = 30_000;

export class SourceFencer {
  readonly #vault: () => VaultContext;
  readonly #retryMs: number;
  readonly #log: (line: string) => void;
  /** One attempt per machine at a time: a reconnect and the retry timer may meet. */
  readonly #attempts = new Map<string, Promise<void>>();
  #timer: NodeJS.Timeout | null = null;
  #retrying: Promise<void> | null = null;

  constructor(vault: () => VaultContext, options: { retryMs?: number; log?: (line: string) => void } = {}) {
    this.#vault = vault;
    this.#retryMs = options.retryMs ?? SOURCE_FENCE_RETRY_MS;
    this.#log = options.log ?? ((line) => console.error(line));
  }

  /** Fences every source left unverified on the host (it has just connected). Never throws. */
  async fenceOn(hostId: string): Promise<void> {
    let machines: Machine[];
    try {
      // Not filtered by host: the source's host is whichever the machine was active on then.
      machines = await this.#vault().store.machines.list();
    } catch (error) {
      this.#log(`haven: source fence: cannot list the machines of host ${hostId}: ${messageOf(error)}`);
      return;
    }
    await Promise.all(
      machines.flatMap((machine) => {
        const fence = sourceLeftOn(machine, hostId);
        return fence ? [this.#once(machine, fence)] : [];
      }),
    );
  }

  start(): void {
    this.#timer = setInterval(() => {
      this.#retrying ??= this.#retry().finally(() => {
        this.#retrying = null;
      });
    }, this.#retryMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#retrying;
    await Promise.all(this.#attempts.values());
  }

  async #retry(): Promise<void> {
    const vault = this.#vault();
    const machines = await vault.store.machines.list().catch(() => []);
    const hosts = new Set(
      machines.flatMap((m) =>
        m.sourceFence && !m.sourceFence.verified && vault.hosts.isConnected(m.sourceFence.hostId)
          ? [m.sourceFence.hostId]
          : [],
      ),
    );
    for (const hostId of hosts) await this.fenceOn(hostId);
  }

  #once(machine: Machine, fence: Unverified): Promise<void> {
    const running = this.#attempts.get(machine.id);
    if (running) return running;
    const attempt = this.#fence(machine, fence)
      .catch((error: unknown) => {
        this.#log(`haven: source fence of machine '${machine.name}' failed: ${messageOf(error)}`);
      })
      .finally(() => this.#attempts.delete(machine.id));
    this.#attempts.set(machine.id, attempt);
    return attempt;
  }

  async #fence(machine: Machine, fence: Unverified): Promise<void> {
    const vault = this.#vault();
    const services = hostServices(vault, fence.hostId);
    const host = (await vault.store.hosts.get(fence.hostId))?.name ?? fence.hostId;
    const outcome = machine.server
      ? await fenceServer(
          vault,
          machine,
          fence.hostId,
          `host came back after job ${fence.jobId} failed it over`,
        )
      : await fenceAndVerify(services.hypervisor, fence.vmName);
    const at = isoNow(vault.clock);
    if (!outcome.fenced) {
      await vault.store.machines.recordSourceFence(machine.id, {
        ...fence,
        reason: `host '${host}' is back but ${outcome.reason}`,
        attempts: fence.attempts + 1,
        lastAttemptAt: at,
      });
      await raiseFenceAlert(
        vault,
        machine,
        `source machine '${fence.vmName}' on host '${host}' not verified fenced (${outcome.reason}); ` +
          `Haven tries again every ${this.#retryMs / 1000} s and at the host's next reconnect`,
        at,
      );
      this.#log(
        `haven: machine '${machine.name}': its source '${fence.vmName}' on host '${host}' is still not verified stopped: ${outcome.reason}`,
      );
      return;
    }
    // Its sender must not outlive it: the machine runs elsewhere now.
    await services.replication.stop({ machineId: machine.id }).catch((error: unknown) => {
      if (!(error instanceof HavenError && error.code === 'not_available')) throw error;
    });
    await vault.store.machines.recordSourceFence(machine.id, {
      verified: true,
      hostId: fence.hostId,
      vmName: fence.vmName,
      state: outcome.state,
      jobId: fence.jobId,
      fencedAt: at,
      by: 'host-returned',
    });
    await vault.store.alerts.clear(fenceAlertKey(machine.id), at);
    const said = `source machine '${fence.vmName}' fenced when host '${host}' came back (verified: ${outcome.state}) at ${at}`;
    const job = await vault.store.jobs.get(fence.jobId);
    if (job && !isTerminalJobState(job.state)) {
      await vault.store.jobs.update(job.id, { output: { ...outputOutsideSteps(job), fenceOnReturn: said } });
    }
    this.#log(`haven: machine '${machine.name}': ${said}; the fence-not-verified alert is cleared`);
  }
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));
