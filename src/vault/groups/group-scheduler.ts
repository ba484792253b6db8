/**
 * Takes points on a schedule: a crash-consistent cut of every consistency
 * group every `groupCutIntervalMs`, and app-consistent points at each
 * policy's `appConsistentFrequencySeconds` for machines the vault can
 * quiesce — one app-consistent cut for a whole group, so "latest
 * multi-machine app-consistent" has points to choose. An imported libvirt
 * domain with a guest agent channel is quiesced through its agent, any other
 * machine by the vault's hook; an imported domain with neither gets one alert
 * saying so.
 */
import { randomUUID } from 'node:crypto';
import { isoNow } from '../../clock/index.ts';
import { type Machine, type MachineState, vmNameOf } from '../../domain/model.ts';
import {
  type AppConsistentResult,
  clearNoQuiescer,
  guestAgentQuiescer,
  hookQuiescer,
  type Quiescer,
  reportAppConsistency,
  reportNoQuiescer,
  takeAppConsistentPoint,
} from '../app-consistency/index.ts';
import { hostServices } from '../host-call.ts';
import type { VaultContext } from '../vault-context.ts';
import { takeGroupCut } from './group-cut.ts';
import { cutParticipants } from './group-service.ts';

/** States in which a machine writes through its primary disk service, so a marker there is a point. */
const MARKABLE: ReadonlySet<MachineState> = new Set(['protected', 'test-failover-active']);

export interface GroupSchedulerOptions {
  /** Crash-consistent group cuts, default 60 s. */
  groupCutIntervalMs?: number;
  /**
   * Script run as `<hook> freeze|thaw` on the vault host, for machines without
   * a guest agent; without one only those with an agent get app-consistent points.
   */
  appConsistencyHook?: string;
  /** Bound of a freeze (and of the thaw), default 10 s. */
  appConsistencyTimeoutMs?: number;
  /** How long writes stay held for a cut, at most (default: group-cut's). */
  holdTimeoutMs?: number;
  /** How often the schedule is looked at, default min(1 s, groupCutIntervalMs). */
  tickMs?: number;
}

/**
 * How a machine is quiesced, or why it cannot be (`unavailable`: alerted), or
 * why that could not be told (`failed`), or that it is not (`skip`).
 */
type QuiescerChoice = { quiescer: Quiescer } | { unavailable: string } | { failed: string } | { skip: true };

/** Several machines quiesced as one: all freeze, all thaw (every thaw is tried). */
function allOf(quiescers: Quiescer[]): Quiescer {
  return {
    freeze: async (signal) => {
      await Promise.all(quiescers.map((q) => q.freeze(signal)));
    },
    thaw: async (signal) => {
      const results = await Promise.allSettled(quiescers.map((q) => q.thaw(signal)));
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    },
  };
}

export class GroupScheduler {
  readonly #vault: VaultContext;
  readonly #cutIntervalMs: number;
  readonly #hook: string | null;
  readonly #appTimeoutMs: number;
  readonly #holdTimeoutMs: number | undefined;
  readonly #tickMs: number;
  /** Last attempt per group (crash cuts) and per group or machine (app-consistent), in ms. */
  readonly #lastCut = new Map<string, number>();
  readonly #lastApp = new Map<string, number>();
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;

  constructor(vault: VaultContext, options: GroupSchedulerOptions = {}) {
    this.#vault = vault;
    this.#cutIntervalMs = options.groupCutIntervalMs ?? 60_000;
    this.#hook = options.appConsistencyHook ?? null;
    this.#appTimeoutMs = options.appConsistencyTimeoutMs ?? 10_000;
    this.#holdTimeoutMs = options.holdTimeoutMs;
    this.#tickMs = options.tickMs ?? Math.min(1000, this.#cutIntervalMs);
  }

  start(): void {
    // A failed look (the store briefly away) is retried at the next tick; cut failures raise alerts.
    this.#timer ??= setInterval(() => void this.runOnce().catch(() => undefined), this.#tickMs);
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#running;
  }

  /** One look at the schedule: takes what is due (the timer calls it; tests may too). */
  runOnce(): Promise<void> {
    this.#running ??= this.#run().finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  async #run(): Promise<void> {
    const { store } = this.#vault;
    const now = Date.now();
    const frequency = new Map(
      (await store.policies.list()).map((p) => [p.id, p.appConsistentFrequencySeconds]),
    );
    const groups = new Map<string, Machine[]>();
    const singles: Machine[] = [];
    for (const m of await store.machines.list()) {
      if (m.groupId === null) singles.push(m);
      else groups.set(m.groupId, [...(groups.get(m.groupId) ?? []), m]);
    }
    const appEverySeconds = (ms: Machine[]) => {
      const wanted = ms.map((m) => (m.policyId ? (frequency.get(m.policyId) ?? 0) : 0)).filter((f) => f > 0);
      return wanted.length === 0 ? 0 : Math.min(...wanted);
    };
    for (const [name, members] of groups) {
      // A cut without one of the members is no point of the group: wait until all can be marked.
      if (!members.every((m) => MARKABLE.has(m.state))) continue;
      const every = appEverySeconds(members);
      if (every > 0 && this.#due(this.#lastApp, `group:${name}`, every * 1000, now)) {
        const quiescers = await this.#quiescersOf(name, members);
        if (quiescers) {
          await this.#appConsistentCut(name, members, quiescers);
          continue;
        }
      }
      if (this.#due(this.#lastCut, name, this.#cutIntervalMs, now)) await this.#crashCut(name, members);
    }
    for (const m of singles) {
      const every = appEverySeconds([m]);
      if (!MARKABLE.has(m.state) || every === 0) continue;
      if (!this.#due(this.#lastApp, m.id, every * 1000, now)) continue;
      const [quiescer] = (await this.#quiescersOf(null, [m])) ?? [];
      if (!quiescer) continue;
      const result = await takeAppConsistentPoint({
        machineIds: [m.id],
        quiescer,
        disk: hostServices(this.#vault, m.activeHostId).disk,
        timeoutMs: this.#appTimeoutMs,
      });
      await reportAppConsistency(this.#vault, m, result);
    }
  }

  /**
   * One quiescer per machine, or undefined when one of them has none (its
   * alert raised: no means, or the failure to find out) — a group is
   * app-consistent only when every member is quiesced.
   */
  async #quiescersOf(group: string | null, members: Machine[]): Promise<Quiescer[] | undefined> {
    const quiescers: Quiescer[] = [];
    for (const m of members) {
      const choice = await this.#quiescerOf(m);
      if ('quiescer' in choice) {
        await clearNoQuiescer(this.#vault, m);
        quiescers.push(choice.quiescer);
        continue;
      }
      if ('unavailable' in choice) await reportNoQuiescer(this.#vault, m, choice.unavailable);
      else if ('failed' in choice) {
        await reportAppConsistency(this.#vault, m, {
          ok: false,
          markerId: null,
          frozenMs: 0,
          error: `${group === null ? '' : `group '${group}': `}${choice.failed}`,
        });
      }
    }
    return quiescers.length === members.length ? quiescers : undefined;
  }

  /**
   * The guest agent for an imported domain that has its channel (asked of its
   * host now), else the hook; an imported domain with neither is `unavailable`.
   */
  async #quiescerOf(m: Machine): Promise<QuiescerChoice> {
    if (m.importedFrom) {
      const domain = vmNameOf(m);
      const hypervisor = hostServices(this.#vault, m.activeHostId).hypervisor;
      let guestAgent: boolean;
      try {
        const { domains } = await hypervisor.inventory({ name: domain });
        guestAgent = domains[0]?.guestAgent === true;
      } catch (error) {
        return {
          failed: `could not ask its host whether domain '${domain}' has a guest agent: ${error instanceof Error ? error.message : error}`,
        };
      }
      if (guestAgent) return { quiescer: guestAgentQuiescer(hypervisor, m, this.#appTimeoutMs) };
      if (this.#hook !== null) return { quiescer: hookQuiescer(this.#hook, m) };
      return {
        unavailable: `its libvirt domain '${domain}' has no guest agent channel (<channel type='unix'> with target org.qemu.guest_agent.0) and the vault has no app-consistency hook (haven vault --app-consistency-hook)`,
      };
    }
    if (this.#hook !== null) return { quiescer: hookQuiescer(this.#hook, m) };
    // As before guest agents: a machine Haven runs, on a vault without a hook, is not quiesced (and no alert).
    return { skip: true };
  }

  #due(last: Map<string, number>, key: string, everyMs: number, now: number): boolean {
    const at = last.get(key);
    if (at !== undefined && now - at < everyMs) return false;
    last.set(key, now);
    return true;
  }

  async #crashCut(name: string, members: Machine[]): Promise<void> {
    const key = `group-cut:${name}`;
    try {
      await takeGroupCut({
        participants: cutParticipants(this.#vault, members),
        ...(this.#holdTimeoutMs ? { holdTimeoutMs: this.#holdTimeoutMs } : {}),
      });
      await this.#vault.store.alerts.clear(key, isoNow(this.#vault.clock));
    } catch (error) {
      await this.#vault.store.alerts.raise({
        id: randomUUID(),
        key,
        severity: 'warning',
        message: `Consistency group '${name}': multi-machine point failed: ${error instanceof Error ? error.message : error}`,
        subjectType: 'vault',
        subjectId: null,
        raisedAt: isoNow(this.#vault.clock),
        clearedAt: null,
      });
    }
  }

  /** Every member frozen, one app-consistent cut across their hosts, every member thawed; all bounded. */
  async #appConsistentCut(
    name: string,
    members: Machine[],
    quiescers: Quiescer[],
  ): Promise<AppConsistentResult> {
    const participants = cutParticipants(this.#vault, members);
    const groupPointId = randomUUID();
    const result = await takeAppConsistentPoint({
      machineIds: members.map((m) => m.id),
      quiescer: allOf(quiescers),
      disk: {
        insertMarker: async () => {
          const cut = await takeGroupCut({
            participants,
            type: 'app-consistent',
            groupPointId,
            ...(this.#holdTimeoutMs ? { holdTimeoutMs: this.#holdTimeoutMs } : {}),
          });
          return { markerId: cut.groupPointId, time: cut.markers[0]?.time ?? isoNow(this.#vault.clock) };
        },
      },
      timeoutMs: this.#appTimeoutMs,
      groupPointId,
    });
    for (const m of members) {
      await reportAppConsistency(this.#vault, m, {
        ...result,
        error: result.error === null ? null : `group '${name}': ${result.error}`,
      });
    }
    return result;
  }
}
