import { randomUUID } from 'node:crypto';
import { isoNow } from '../clock/index.ts';
import { isReplicating, serverAtPrimary } from '../domain/index.ts';
import {
  type Machine,
  type MachineKind,
  machineKindOf,
  type ReplicationHealth,
  type ReplicationSnapshot,
  type ServerLinkSnapshot,
} from '../domain/model.ts';
import type { BrokenDiskPath, MirrorStatus, ReplicationStatus } from '../host/host-services.ts';
import { hostServices } from './host-call.ts';
import { serverLinkWords } from './servers/index.ts';
import type { VaultContext } from './vault-context.ts';

/**
 * Health of one machine's replication against its policy (pure): critical
 * when the RPO is past the threshold or replication is broken, warning while
 * copying, healthy otherwise.
 */
export function replicationHealth(
  snapshot: ReplicationSnapshot,
  rpoThresholdSeconds: number | null,
): ReplicationHealth {
  if (snapshot.state === 'error' || snapshot.state === 'unreachable') return 'critical';
  // A server is protected only while every leg is in sync: the sender streaming says nothing of its mirror.
  const server = snapshot.server?.state;
  if (server === 'degraded' || server === 'agent-silent') return 'critical';
  if (
    rpoThresholdSeconds !== null &&
    snapshot.rpoSeconds !== null &&
    snapshot.rpoSeconds > rpoThresholdSeconds
  ) {
    return 'critical';
  }
  if (snapshot.state !== 'streaming') return 'warning';
  if (server !== undefined && server !== 'in-sync') return 'warning';
  return 'healthy';
}

/**
 * The vault's snapshot of a machine's replication from its host's status
 * (pure). A disk its host does not serve (export gone, journal failed) is an
 * error whatever the sender says: the guest cannot write what Haven should see.
 */
export function replicationSnapshot(
  status: ReplicationStatus,
  throughputBytesPerSec: number,
  updatedAt: string,
  kind: MachineKind = 'vm',
): ReplicationSnapshot {
  const broken = status.brokenDisks;
  const base: ReplicationSnapshot = {
    state: broken.length > 0 ? 'error' : status.state,
    progress: status.progress,
    copy: status.copy ?? null,
    rpoSeconds: status.lagSeconds,
    pendingBytes: status.queuedBytes,
    sentBytes: status.sentBytes,
    throughputBytesPerSec,
    lastError: broken.length > 0 ? brokenDisksMessage(broken) : status.lastError,
    updatedAt,
  };
  if (kind === 'server') return broken.length > 0 ? base : withServer(base, status.server ?? null);
  return broken.length > 0 || !status.mirror ? base : withMirror(base, status.mirror);
}

/**
 * What replicates the machine now: a server failed over runs as a VM at the
 * recovery site, whose disks (not the server's legs) are replicated back.
 */
function replicatedAs(machine: Machine): MachineKind {
  const kind = machineKindOf(machine);
  return kind === 'server' && !serverAtPrimary(machine) ? 'vm' : kind;
}

/**
 * A physical server's replica has what its NBD legs got: while a leg is out,
 * resyncing or its agent silent, the machine says so (never healthy). A host
 * that reports no server link for it cannot vouch for it at all: an error.
 */
function withServer(base: ReplicationSnapshot, server: ServerLinkSnapshot | null): ReplicationSnapshot {
  if (server === null) {
    return {
      ...base,
      state: 'error',
      lastError:
        "its host reports no server link for this physical server (does the host's agent serve physical servers?)",
    };
  }
  const snapshot = { ...base, server };
  if (server.state === 'in-sync') return snapshot;
  return { ...snapshot, lastError: server.problem ?? serverLinkWords(server) };
}

/**
 * A machine protected through QEMU's mirror replicates only what reaches its
 * sinks: while a disk is not mirrored (domain off, job failed, copying again
 * after a break) the replica has no new consistent point, whatever the sender
 * says, so the machine is never shown streaming (healthy) then.
 */
function withMirror(base: ReplicationSnapshot, status: MirrorStatus): ReplicationSnapshot {
  const { machineId: _, ...mirror } = status;
  const snapshot = { ...base, mirror };
  if (mirror.state === 'armed') return snapshot;
  const copying = mirror.disks.filter((d) => d.copy !== null);
  const doneBytes = copying.reduce((sum, d) => sum + d.copy!.doneBytes, 0);
  const totalBytes = copying.reduce((sum, d) => sum + d.copy!.totalBytes, 0);
  const copy = copying.length > 0 ? { doneBytes, totalBytes } : null;
  const progress = totalBytes > 0 ? Math.min(99, (100 * doneBytes) / totalBytes) : 0;
  const problems = mirror.disks
    .filter((d) => d.state === 'not-armed' || d.state === 'domain-off')
    .map((d) => `disk ${d.diskId} (${d.target}): ${d.problem ?? 'not mirrored'}`);
  if (mirror.paused) {
    // Nothing is mirrored: the replica keeps its last point, and the machine says why it gets no new one.
    return {
      ...snapshot,
      state: 'paused',
      copy,
      progress,
      lastError: `protection of domain '${mirror.domain}' is paused by an operator: no new point until it is resumed`,
    };
  }
  if (mirror.state === 'syncing') return { ...snapshot, state: 'initial-sync', copy, progress };
  if (problems.length === 0) {
    // Every disk copies again after a break: the replica is inconsistent until they are synced.
    return {
      ...snapshot,
      state: 'resync',
      copy,
      progress,
      lastError: `the mirror of domain '${mirror.domain}' is being armed again; no consistent point until it is synced`,
    };
  }
  const off = mirror.disks.every((d) => d.state === 'domain-off');
  return {
    ...snapshot,
    // A domain that is off writes nothing: its last point stays good (paused); anything else is an error.
    state: off ? 'paused' : 'error',
    copy,
    progress,
    lastError: `domain '${mirror.domain}' is not mirrored: ${problems.join('; ')}`,
  };
}

function brokenDisksMessage(broken: readonly BrokenDiskPath[]): string {
  return `disk path broken: ${broken.map((d) => `disk '${d.diskId}': ${d.problem}`).join('; ')}`;
}

/**
 * Polls the hosts for each replicating machine's status, records it on the
 * machine (RPO, bytes pending, throughput, state) and in its history and raises an alert when
 * the RPO passes the policy's threshold, clearing it when it recovers.
 */
export class ReplicationMonitor {
  readonly #vault: VaultContext;
  readonly #intervalMs: number;
  readonly #previous = new Map<string, { sentBytes: number; at: number }>();
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;

  constructor(vault: VaultContext, options: { intervalMs?: number } = {}) {
    this.#vault = vault;
    this.#intervalMs = options.intervalMs ?? 5000;
  }

  start(): void {
    this.#timer ??= setInterval(() => void this.pollOnce(), this.#intervalMs);
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#running;
  }

  /** One pass over every replicating machine (the timer calls it; tests call it directly). */
  pollOnce(): Promise<void> {
    this.#running ??= this.#poll().finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  async #poll(): Promise<void> {
    const { store } = this.#vault;
    const thresholds = new Map((await store.policies.list()).map((p) => [p.id, p.rpoThresholdSeconds]));
    for (const machine of await store.machines.list()) {
      if (!isReplicating(machine.state)) continue;
      try {
        await this.#check(machine, machine.policyId ? (thresholds.get(machine.policyId) ?? null) : null);
      } catch (error) {
        console.error(`haven: replication monitor: ${machine.name}:`, error);
        await this.#recordUnknown(machine, error).catch(() => {});
      }
    }
  }

  /** Raised while the host reports disks of the machine it does not serve; cleared once it serves them all. */
  async #alertBrokenDisks(machine: Machine, broken: readonly BrokenDiskPath[]): Promise<void> {
    const { store, clock } = this.#vault;
    const key = `disk-path:${machine.id}`;
    if (broken.length === 0) {
      await store.alerts.clear(key, isoNow(clock));
      return;
    }
    await store.alerts.raise({
      id: randomUUID(),
      key,
      severity: 'critical',
      message: `Machine '${machine.name}': ${brokenDisksMessage(broken)}`,
      subjectType: 'machine',
      subjectId: machine.id,
      raisedAt: isoNow(clock),
      clearedAt: null,
    });
  }

  /** The host could not say: the machine's health is unknown (never the last green), its snapshot keeps why. */
  async #recordUnknown(machine: Machine, error: unknown): Promise<void> {
    const { store, clock } = this.#vault;
    const reason = error instanceof Error ? error.message : String(error);
    const snapshot: ReplicationSnapshot = {
      ...(machine.replication ?? {
        state: 'error',
        progress: 0,
        rpoSeconds: null,
        pendingBytes: 0,
        sentBytes: 0,
        throughputBytesPerSec: 0,
      }),
      lastError: `the host did not report this machine's replication: ${reason}`,
      updatedAt: isoNow(clock),
    };
    await store.machines.recordReplication(machine.id, snapshot, 'unknown', machine);
  }

  async #check(machine: Machine, threshold: number | null): Promise<void> {
    const { store, clock } = this.#vault;
    const now = clock.now();
    let snapshot: ReplicationSnapshot;
    if (!this.#vault.hosts.isConnected(machine.activeHostId)) {
      snapshot = {
        ...(machine.replication ?? { progress: 0, rpoSeconds: null, pendingBytes: 0, sentBytes: 0 }),
        state: 'unreachable',
        throughputBytesPerSec: 0,
        lastError: 'the host replicating this machine is not connected to the vault',
        updatedAt: now.toISOString(),
      } as ReplicationSnapshot;
    } else {
      const status = await hostServices(this.#vault, machine.activeHostId).replication.status({
        machineId: machine.id,
      });
      const previous = this.#previous.get(machine.id);
      const seconds = previous ? (now.getTime() - previous.at) / 1000 : 0;
      const throughput =
        previous && seconds > 0 ? Math.max(0, (status.sentBytes - previous.sentBytes) / seconds) : 0;
      this.#previous.set(machine.id, { sentBytes: status.sentBytes, at: now.getTime() });
      snapshot = replicationSnapshot(
        status,
        Math.round(throughput),
        now.toISOString(),
        replicatedAs(machine),
      );
      await this.#alertBrokenDisks(machine, status.brokenDisks);
    }
    const health = replicationHealth(snapshot, threshold);
    // The machine may have failed over, back or been reprotected while its host answered: then this status is of the old direction.
    if (!(await store.machines.recordReplication(machine.id, snapshot, health, machine))) return;
    await store.replicationHistory.record(machine.id, {
      at: snapshot.updatedAt,
      throughputBytesPerSec: snapshot.throughputBytesPerSec,
      pendingBytes: snapshot.pendingBytes,
      rpoSeconds: snapshot.rpoSeconds,
    });

    const key = `rpo:${machine.id}`;
    const breached = threshold !== null && snapshot.rpoSeconds !== null && snapshot.rpoSeconds > threshold;
    if (breached) {
      await store.alerts.raise({
        id: randomUUID(),
        key,
        severity: 'critical',
        message: `Machine '${machine.name}': RPO ${Math.round(snapshot.rpoSeconds!)} s exceeds its policy's threshold of ${threshold} s`,
        subjectType: 'machine',
        subjectId: machine.id,
        raisedAt: isoNow(clock),
        clearedAt: null,
      });
    } else if (snapshot.state !== 'unreachable') {
      await store.alerts.clear(key, isoNow(clock));
    }
  }
}
