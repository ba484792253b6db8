/**
 * The host's `mirror` operations: live protection of hypervisor domains that
 * Haven does not serve (libvirt domains on their own images). QEMU's active
 * mirror copies every write of a disk into its journal-only sink; this
 * service arms it, keeps it armed and cuts the recovery points.
 *
 * Why it watches instead of reacting to events: the mirror ends whenever the
 * QEMU process ends (domain stopped and started, QEMU killed) or the sink
 * stays away longer than the reconnect delay (agent down), and an agent that
 * restarts has missed whatever happened meanwhile. Every tick therefore asks
 * QEMU for each disk's job and drives it towards "armed":
 *
 * - no job (first time, or a new QEMU process): arm it;
 * - a failed job: remove it and arm again;
 * - a job copying: wait; the sink is not ready (no consistent point);
 * - every disk synced: the sinks are declared ready (first point) and points
 *   are cut across the disks every `pointIntervalMs` (QEMU never forwards
 *   guest flushes to a mirror target).
 *
 * Arming again after a break is a full background copy by QEMU; when the
 * sinks can compare (`compare`), they journal only blocks that differ from
 * the replica, so the disk is not sent again.
 */
import { isoNow, systemClock } from '../clock/index.ts';
import type { DiskService as CoreDiskService } from '../disk/index.ts';
import type { SinkCompareStats } from '../disk/sink-backend.ts';
import { HavenError } from '../errors/index.ts';
import type { ActiveMirrorDriver, MirrorJobState } from '../hypervisor/active-mirror.ts';
import { findQemuProcesses, processGroups } from '../hypervisor/qemu-process.ts';
import type { ShareGroup } from '../storage/share-group.ts';
import { diskKeyOf } from './disk-key.ts';
import { exportNameOf } from './host-disk-service.ts';
import type { DiskService, Mirror, MirrorDiskStatus, MirroredDisk, MirrorStatus } from './host-services.ts';
import type { HostStateFile, SavedMirror } from './host-state-file.ts';

/** What lets a re-armed sink skip the blocks the replica already holds. */
export interface SinkCompare {
  /** Puts the sink of `exportName` in compare mode against the replica (waits for the sender to drain). */
  begin(exportName: string, diskKey: string, blockBytes: number): Promise<void>;
  /** Back to journaling everything; what compare mode let through and skipped. */
  end(exportName: string): Promise<SinkCompareStats>;
}

export interface MirrorServiceOptions {
  /** The hypervisor's mirror; null: the host cannot mirror (built-in QEMU driver). */
  driver: ActiveMirrorDriver | null;
  /** The disk service core (sinks: ready, points) and the host's disk operations (markers across disks). */
  core: CoreDiskService;
  disks: Pick<DiskService, 'insertMarker'>;
  /** The disk service's Unix socket, which QEMU connects to. */
  socket: string;
  state: HostStateFile;
  compare?: SinkCompare | null;
  /**
   * The group the disk socket is shared with; QEMU must be in it. Null: the
   * socket is owner-only, which no QEMU running as another user can open.
   */
  shareGroup?: ShareGroup | null;
  tickMs?: number;
  pointIntervalMs?: number;
  reconnectDelaySeconds?: number;
  granularityBytes?: number;
  log?: (line: string) => void;
}

const DEFAULT_TICK_MS = 1000;
const DEFAULT_POINT_INTERVAL_MS = 2000;
const DEFAULT_RECONNECT_DELAY_SECONDS = 10;
const DEFAULT_GRANULARITY = 64 << 10;
/** Journal fill (share of its capacity) above which QEMU's background copy is paused, and below which it resumes. */
const JOURNAL_HIGH = 0.75;
const JOURNAL_LOW = 0.5;

interface DiskWatch {
  disk: MirroredDisk;
  exportName: string;
  job: MirrorJobState | null;
  problem: string | null;
  armedAt: string | null;
  arms: number;
  lastRearm: MirrorDiskStatus['lastRearm'];
  comparing: boolean;
  /** When a pass last saw the job synced with its sink ready (ms); 0 when not since the last break. */
  syncedAtMs: number;
  /** The background copy is paused by flow control (the journal waits for the sender). */
  throttled: boolean;
  /** Protection was resumed after an operator's pause: the next arm says so. */
  resumed: boolean;
}

interface MachineWatch {
  saved: SavedMirror;
  disks: DiskWatch[];
  lastPointAtMs: number;
  lastPointAt: string | null;
  stoppedPointAt: string | null;
  busy: Promise<void> | null;
}

export class MirrorService implements Mirror {
  readonly #o: Required<Omit<MirrorServiceOptions, 'compare' | 'log' | 'shareGroup'>> &
    Pick<MirrorServiceOptions, 'log'>;
  readonly #shareGroup: ShareGroup | null;
  readonly #compare: SinkCompare | null;
  readonly #machines = new Map<string, MachineWatch>();
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(options: MirrorServiceOptions) {
    this.#o = {
      ...options,
      tickMs: options.tickMs ?? DEFAULT_TICK_MS,
      pointIntervalMs: options.pointIntervalMs ?? DEFAULT_POINT_INTERVAL_MS,
      reconnectDelaySeconds: options.reconnectDelaySeconds ?? DEFAULT_RECONNECT_DELAY_SECONDS,
      granularityBytes: options.granularityBytes ?? DEFAULT_GRANULARITY,
    };
    this.#compare = options.compare ?? null;
    this.#shareGroup = options.shareGroup ?? null;
    for (const saved of options.state.mirrors) this.#watch(saved);
    if (options.driver !== null) {
      this.#timer = setInterval(() => this.#tickAll(), this.#o.tickMs);
      this.#timer.unref();
    }
  }

  async protect(params: {
    machineId: string;
    domain: string;
    disks: MirroredDisk[];
    seeded?: boolean;
  }): Promise<MirrorStatus> {
    const driver = this.#driver();
    const { machineId, domain, disks } = params;
    if (disks.length === 0) {
      throw new HavenError('validation_failed', `machine '${machineId}': no disk to mirror`, {
        field: 'disks',
      });
    }
    const sinks = new Map(this.#o.core.list().map((e) => [e.name, e]));
    for (const d of disks) {
      const exported = sinks.get(exportNameOf({ machineId, diskId: d.diskId }));
      if (!exported?.sink) {
        throw new HavenError(
          'operation_not_allowed',
          `disk ${d.diskId} of machine '${machineId}' has no sink on this host: attach it with sink first`,
          { machineId, diskId: d.diskId, allowed: ['disk.attach'] },
        );
      }
    }
    const current = this.#machines.get(machineId);
    if (current && current.saved.domain !== domain) {
      throw new HavenError(
        'conflict',
        `machine '${machineId}' is already mirrored from domain '${current.saved.domain}', not '${domain}'; unprotect it first`,
        { machineId, domain: current.saved.domain },
      );
    }
    if (!current) {
      // Refused at once when the domain's disk does not exist there, not later in a tick.
      await driver.mirrorState({ domain, target: disks[0]!.target });
      const saved: SavedMirror = {
        machineId,
        domain,
        disks: disks.map((d) => ({ ...d })),
        ...(params.seeded ? { seeded: true } : {}),
      };
      await this.#o.state.setMirror(saved);
      this.#watch(saved);
    }
    await this.#tick(machineId);
    return this.status({ machineId });
  }

  async unprotect({ machineId }: { machineId: string }): Promise<void> {
    const watch = this.#machines.get(machineId);
    if (!watch) return;
    await watch.busy;
    await this.#disarm(watch);
    this.#machines.delete(machineId);
    await this.#o.state.removeMirror(machineId);
  }

  async pause({ machineId }: { machineId: string }): Promise<MirrorStatus> {
    const watch = this.#watched(machineId);
    // Saved first: a pass that starts meanwhile (or an agent restarted later) arms nothing.
    watch.saved = { ...watch.saved, paused: true };
    await this.#o.state.setMirror(watch.saved);
    await watch.busy;
    await this.#disarm(watch);
    this.#o.log?.(`haven: protection of ${watch.saved.domain} paused`);
    return this.#statusOf(watch);
  }

  async resume({ machineId }: { machineId: string }): Promise<MirrorStatus> {
    const watch = this.#watched(machineId);
    if (watch.saved.paused) {
      watch.saved = { ...watch.saved, paused: false };
      await this.#o.state.setMirror(watch.saved);
      for (const d of watch.disks) d.resumed = true;
      this.#o.log?.(`haven: protection of ${watch.saved.domain} resumed`);
    }
    await this.#tick(machineId);
    return this.#statusOf(watch);
  }

  /** Every disk's job ended and what Haven added removed; its sink not ready (no point until armed again). */
  async #disarm(watch: MachineWatch): Promise<void> {
    const driver = this.#driver();
    for (const d of watch.disks) {
      await driver.disarmMirror({ domain: watch.saved.domain, target: d.disk.target });
      await this.#notReady(d);
      if (d.comparing) await this.#compare?.end(d.exportName);
      d.comparing = false;
      d.job = { state: 'absent' };
      d.syncedAtMs = 0;
    }
  }

  #watched(machineId: string): MachineWatch {
    const watch = this.#machines.get(machineId);
    if (!watch) {
      throw new HavenError('not_found', `machine '${machineId}' is not mirrored on this host`, {
        kind: 'mirror',
        id: machineId,
      });
    }
    return watch;
  }

  async status({ machineId }: { machineId: string }): Promise<MirrorStatus> {
    const watch = this.#machines.get(machineId);
    if (!watch) {
      throw new HavenError('not_found', `machine '${machineId}' is not mirrored on this host`, {
        kind: 'mirror',
        id: machineId,
      });
    }
    return this.#statusOf(watch);
  }

  /** Whether the host mirrors the machine (its writes reach the sinks through QEMU, not the disk service). */
  mirrors(machineId: string): boolean {
    return this.#machines.has(machineId);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await Promise.all([...this.#machines.values()].map((w) => w.busy));
  }

  // ---- internals -----------------------------------------------------------

  #driver(): ActiveMirrorDriver {
    if (this.#o.driver === null) {
      throw new HavenError(
        'not_available',
        "this host's hypervisor driver cannot mirror a running machine: run the host with --libvirt URI",
        { allowed: ['haven host --libvirt'] },
      );
    }
    return this.#o.driver;
  }

  #watch(saved: SavedMirror): void {
    this.#machines.set(saved.machineId, {
      saved,
      disks: saved.disks.map((disk) => ({
        disk,
        exportName: exportNameOf({ machineId: saved.machineId, diskId: disk.diskId }),
        job: null,
        problem: null,
        armedAt: null,
        arms: 0,
        lastRearm: null,
        comparing: false,
        syncedAtMs: 0,
        throttled: false,
        resumed: false,
      })),
      lastPointAtMs: 0,
      lastPointAt: null,
      stoppedPointAt: null,
      busy: null,
    });
  }

  #tickAll(): void {
    if (this.#closed) return;
    for (const machineId of this.#machines.keys()) {
      this.#tick(machineId).catch(() => {});
    }
  }

  /** One pass for one machine; a pass already running is waited for, never doubled. */
  #tick(machineId: string): Promise<void> {
    const watch = this.#machines.get(machineId);
    if (!watch) return Promise.resolve();
    if (watch.busy) return watch.busy;
    watch.busy = this.#pass(watch).finally(() => {
      watch.busy = null;
    });
    return watch.busy;
  }

  async #pass(watch: MachineWatch): Promise<void> {
    const driver = this.#driver();
    const { domain } = watch.saved;
    if (watch.saved.paused) return;
    for (const d of watch.disks) {
      try {
        d.job = await driver.mirrorState({ domain, target: d.disk.target });
        d.problem = null;
        await this.#drive(watch, d, driver);
      } catch (error) {
        d.problem = `${error instanceof Error ? error.message : String(error)}`;
        await this.#notReady(d).catch(() => {});
      }
    }
    if (await this.#finalPoint(watch)) return;
    const synced = watch.disks.every((d) => d.job?.state === 'synced' && !d.problem);
    if (!synced) return;
    for (const d of watch.disks) {
      if (d.comparing) {
        const stats = await this.#compare?.end(d.exportName);
        d.comparing = false;
        if (d.lastRearm && stats) {
          d.lastRearm = {
            ...d.lastRearm,
            journaledBytes: stats.journaledBytes,
            skippedBytes: stats.skippedBytes,
          };
        }
      }
      if (!this.#ready(d)) await this.#o.core.markSinkReady(d.exportName);
    }
    const now = Date.now();
    for (const d of watch.disks) d.syncedAtMs = now;
    if (now - watch.lastPointAtMs >= this.#o.pointIntervalMs) await this.#cut(watch);
  }

  /**
   * The domain stopped (shut down, or its QEMU killed) while every disk was
   * synced: everything the guest saw written is in the sinks, so their state
   * is the disk's last crash-consistent state and gets a point. Proven when
   * the last pass that saw the disks synced is younger than the reconnect
   * delay: a sink connection lost before QEMU ended could not yet have
   * failed the job (QEMU holds writes that long first), so no write went
   * past the sinks.
   */
  async #finalPoint(watch: MachineWatch): Promise<boolean> {
    if (!watch.disks.every((d) => d.job?.state === 'domain-off')) {
      watch.stoppedPointAt = null;
      return false;
    }
    const proven = watch.disks.every(
      (d) => d.syncedAtMs > 0 && Date.now() - d.syncedAtMs < this.#o.reconnectDelaySeconds * 1000,
    );
    for (const d of watch.disks) d.syncedAtMs = 0;
    if (!proven) return true;
    for (const d of watch.disks) if (!this.#ready(d)) await this.#o.core.markSinkReady(d.exportName);
    await this.#cut(watch);
    watch.stoppedPointAt = watch.lastPointAt;
    for (const d of watch.disks) await this.#notReady(d);
    this.#o.log?.(`haven: domain ${watch.saved.domain} stopped while mirrored: last point cut`);
    return true;
  }

  /** Moves one disk's job towards synced. */
  async #drive(watch: MachineWatch, d: DiskWatch, driver: ActiveMirrorDriver): Promise<void> {
    const job = d.job!;
    if (job.state === 'synced') return;
    // Not synced: a write may be missing from the sink, so nothing cut from now on is consistent.
    await this.#notReady(d);
    if (job.state === 'domain-off') {
      d.problem = `domain '${watch.saved.domain}' is not running: its disk ${d.disk.target} is mirrored again when it starts`;
      return;
    }
    if (job.state === 'copying') {
      await this.#flowControl(watch, d, driver, job.paused);
      return;
    }
    let reason = 'first arm';
    if (job.state === 'failed') {
      reason = `the mirror failed: ${job.reason}`;
      await driver.disarmMirror({ domain: watch.saved.domain, target: d.disk.target });
    } else if (d.resumed) {
      reason = 'protection resumed after a pause';
    } else if (d.arms > 0 || this.#journaled(d)) {
      reason = 'a new QEMU process runs the domain (it was stopped and started, or the mirror was removed)';
    }
    await this.#checkQemuReachesSocket(watch.saved.domain);
    const rearm = reason !== 'first arm';
    // A seeded replica already holds most of the disk: the first copy is compared like a re-arm's.
    const compare = rearm || watch.saved.seeded === true;
    if (compare && this.#compare && !d.comparing) {
      await this.#compare.begin(
        d.exportName,
        diskKeyOf(watch.saved.machineId, d.disk.diskId),
        this.#o.granularityBytes,
      );
      d.comparing = true;
    }
    await driver.armMirror({
      domain: watch.saved.domain,
      target: d.disk.target,
      sink: { socket: this.#o.socket, exportName: d.exportName },
      granularityBytes: this.#o.granularityBytes,
      reconnectDelaySeconds: this.#o.reconnectDelaySeconds,
    });
    const at = isoNow(systemClock);
    d.resumed = false;
    d.arms++;
    d.armedAt = at;
    if (compare) {
      if (!rearm) reason = 'first arm, compared with the replica seeded from an image';
      d.lastRearm = { at, reason, compared: d.comparing, journaledBytes: null, skippedBytes: null };
    }
    this.#o.log?.(`haven: mirror of ${watch.saved.domain} ${d.disk.target} armed (${reason})`);
    d.job = await driver.mirrorState({ domain: watch.saved.domain, target: d.disk.target });
  }

  /**
   * QEMU's background copy runs at the speed of local disks, the sender at
   * the speed of the link: the copy is paused while the sink's journal is
   * more than HIGH full and resumed below LOW, so a large disk's first copy
   * never overflows the journal (the guest's own writes go on meanwhile).
   */
  async #flowControl(watch: MachineWatch, d: DiskWatch, driver: ActiveMirrorDriver, paused: boolean) {
    const journal = this.#o.core.journalStatus(d.exportName);
    const fill = journal.usedBytes / journal.capacityBytes;
    const target = { domain: watch.saved.domain, target: d.disk.target };
    if (!paused && fill > JOURNAL_HIGH) {
      await driver.setMirrorPaused({ ...target, paused: true });
      d.throttled = true;
    } else if (paused && fill < JOURNAL_LOW) {
      await driver.setMirrorPaused({ ...target, paused: false });
      d.throttled = false;
    }
  }

  /**
   * QEMU opens the disk socket as its own user: it must be in the share group.
   * A QEMU keeps the groups it started with, so a group made (or joined)
   * after the domain started does not help it: said plainly, instead of
   * QEMU's "Permission denied" on every attempt.
   */
  async #checkQemuReachesSocket(domain: string): Promise<void> {
    const [pid] = await findQemuProcesses(`guest=${domain},`);
    if (pid === undefined) return;
    const groups = await processGroups(pid);
    if (groups === undefined || (this.#shareGroup !== null && groups.includes(this.#shareGroup.gid))) return;
    throw new HavenError(
      'operation_not_allowed',
      this.#shareGroup === null
        ? `QEMU of domain '${domain}' (pid ${pid}) runs as another user and cannot open this host's disk socket: run the host with --share-group libvirt-qemu`
        : `QEMU of domain '${domain}' (pid ${pid}) is not in group '${this.#shareGroup.name}', which the disk socket is shared with (a QEMU keeps the groups it started with): run the host with --share-group libvirt-qemu, or restart the domain`,
      { machine: domain, pid, allowed: ['--share-group libvirt-qemu'] },
    );
  }

  /** A crash-consistent point on every disk of the machine at one instant (writes held meanwhile). */
  async #cut(watch: MachineWatch): Promise<void> {
    const { time } = await this.#o.disks.insertMarker({
      machineIds: [watch.saved.machineId],
      type: 'crash-consistent',
      groupPointId: null,
    });
    watch.lastPointAtMs = Date.now();
    watch.lastPointAt = time;
  }

  #ready(d: DiskWatch): boolean {
    const info = this.#o.core.list().find((e) => e.name === d.exportName);
    return info?.sink?.readySeq != null;
  }

  /** Whether the sink journaled anything yet (a sink that did was armed before, maybe by an earlier agent). */
  #journaled(d: DiskWatch): boolean {
    try {
      return this.#o.core.journalStatus(d.exportName).nextSeq > 1;
    } catch {
      return false;
    }
  }

  async #notReady(d: DiskWatch): Promise<void> {
    if (this.#ready(d)) await this.#o.core.markSinkNotReady(d.exportName);
  }

  #statusOf(watch: MachineWatch): MirrorStatus {
    const disks: MirrorDiskStatus[] = watch.disks.map((d) => {
      const job = d.job;
      const armed = job?.state === 'synced' && !d.problem && this.#ready(d);
      const copying = job?.state === 'copying' && !d.problem;
      return {
        ...d.disk,
        state: armed
          ? 'armed'
          : copying
            ? 'copying'
            : job?.state === 'domain-off'
              ? 'domain-off'
              : 'not-armed',
        problem:
          armed || copying
            ? null
            : watch.saved.paused
              ? 'protection paused by an operator: nothing is mirrored until it is resumed'
              : (d.problem ?? describeJob(job)),
        copy: job?.state === 'copying' ? { doneBytes: job.doneBytes, totalBytes: job.totalBytes } : null,
        waitingForSender: job?.state === 'copying' && d.throttled,
        armedAt: d.armedAt,
        arms: d.arms,
        lastRearm: d.lastRearm,
      };
    });
    const state = disks.every((d) => d.state === 'armed')
      ? 'armed'
      : disks.every((d) => d.state === 'armed' || d.state === 'copying') &&
          // Still the first copy (a seeded replica's first arm compares, and is no break either).
          watch.disks.every((d) => d.lastRearm === null || (watch.saved.seeded === true && d.arms <= 1))
        ? 'syncing'
        : 'not-armed';
    return {
      machineId: watch.saved.machineId,
      domain: watch.saved.domain,
      state,
      ...(watch.saved.paused ? { paused: true } : {}),
      disks,
      lastPointAt: watch.lastPointAt,
      stoppedPointAt: watch.stoppedPointAt,
    };
  }
}

function describeJob(job: MirrorJobState | null): string {
  if (job === null) return 'not checked yet';
  switch (job.state) {
    case 'absent':
      return 'no mirror job runs on the disk';
    case 'domain-off':
      return 'the domain is not running';
    case 'failed':
      return `the mirror failed: ${job.reason}`;
    case 'copying':
      return 'copying';
    case 'synced':
      return 'synced; waiting for its first point';
  }
}
