/**
 * The host's `replication` operations: a Sender that sends machines' disks
 * to a recovery host, from the disk service's journals or (reprotect) from
 * writable views, and the trust of peers' senders for this host's Receiver.
 * What replicates is saved in the host state file and resumed on restart.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlockHashes, DiskService, JournaledBackend, Region } from '../disk/index.ts';
import type { ServerLinkSnapshot } from '../domain/index.ts';
import { HavenError } from '../errors/index.ts';
import type { OverlayView } from '../replica/index.ts';
import { mergeRegions } from '../replica/index.ts';
import { type HostIdentity, type Receiver, type ReplicationSource, Sender } from '../replication/index.ts';
import { readSenderState, type SenderDiskState, writeSenderState } from '../replication/sender-state.ts';
import { PRIVATE_DIR_MODE } from '../storage/private-files.ts';
import { brokenDiskPaths } from './broken-disk-paths.ts';
import { diskIdOf, diskKeyOf, isDiskOf, machineIdOf } from './disk-key.ts';
import { exportNameOf } from './host-disk-service.ts';
import type {
  DiskResyncKind,
  MirrorStatus,
  Replication,
  ReplicationStatus,
  ReplicationTarget,
  ResyncRequested,
} from './host-services.ts';
import type { HostStateFile } from './host-state-file.ts';
import { machineReplicationStatus, type SendingFrom } from './machine-replication-status.ts';
import type { ViewRegistry, WritableView } from './view-registry.ts';

export interface ReplicationServiceOptions {
  /** Sender state goes to `<dataDir>/replication/<machineId>/<diskId>.json`. */
  dataDir: string;
  identity: HostIdentity;
  /** Sender tuning (tests use short polls). */
  pollMs?: number;
  bandwidthBytesPerSec?: number;
  diskService: DiskService;
  views: ViewRegistry;
  receiver: Receiver;
  state: HostStateFile;
  /** Saved disks that could not be attached again after a restart (export name → why). */
  notAttached?: ReadonlyMap<string, string>;
  /** The mirror status of machines whose writes QEMU mirrors into sinks (null: not mirrored here). */
  mirrorStatus?: (machineId: string) => Promise<MirrorStatus | null>;
  /** The link of physical servers whose md legs this host stages (null: not a server here). */
  serverStatus?: (machineId: string) => Promise<ServerLinkSnapshot | null>;
}

type Mode = Parameters<Replication['start']>[0]['mode'];

export class ReplicationService implements Replication {
  readonly #dataDir: string;
  readonly #sender: Sender;
  readonly #diskService: DiskService;
  readonly #views: ViewRegistry;
  readonly #receiver: Receiver;
  readonly #state: HostStateFile;
  readonly #sending = new Map<string, SendingFrom>();
  readonly #notAttached: ReadonlyMap<string, string>;
  readonly #mirrorStatus: (machineId: string) => Promise<MirrorStatus | null>;
  readonly #serverStatus: (machineId: string) => Promise<ServerLinkSnapshot | null>;

  constructor(options: ReplicationServiceOptions) {
    this.#dataDir = options.dataDir;
    this.#sender = new Sender({
      identity: options.identity,
      ...(options.pollMs ? { pollMs: options.pollMs } : {}),
      ...(options.bandwidthBytesPerSec ? { bandwidthBytesPerSec: options.bandwidthBytesPerSec } : {}),
    });
    this.#diskService = options.diskService;
    this.#views = options.views;
    this.#receiver = options.receiver;
    this.#state = options.state;
    this.#notAttached = options.notAttached ?? new Map();
    this.#mirrorStatus = options.mirrorStatus ?? (async () => null);
    this.#serverStatus = options.serverStatus ?? (async () => null);
  }

  async start({ machineId, diskIds, target, mode, source }: Parameters<Replication['start']>[0]) {
    await mkdir(join(this.#dataDir, 'replication', machineId), { recursive: true, mode: PRIVATE_DIR_MODE });
    const viewId = source?.viewId;
    const opened = viewId === undefined ? null : this.#views.writable(viewId, machineId);
    for (const diskId of diskIds) {
      if (this.#senderHas(diskKeyOf(machineId, diskId))) continue;
      const overlay = opened === null ? null : diskOf(opened, diskId).view;
      await this.#prepareMode(machineId, diskId, mode, overlay, source?.extraRegions?.[diskId] ?? []);
    }
    this.#startSending(machineId, diskIds, target, viewId);
    await this.#state.setReplication({
      machineId,
      diskIds,
      target,
      ...(viewId === undefined ? {} : { viewId }),
    });
    return this.#status(machineId);
  }

  async stop({ machineId }: { machineId: string }): Promise<void> {
    for (const s of this.#sender.statuses().filter((x) => isDiskOf(x.diskKey, machineId))) {
      await this.#sender.removeDisk(s.diskKey);
      this.#sending.delete(s.diskKey);
    }
    await this.#state.removeReplication(machineId);
  }

  async reconcile({ machineIds }: { machineIds: string[] }): Promise<{ stopped: string[] }> {
    const wanted = new Set(machineIds);
    const running = new Set(this.#state.replications.map((r) => r.machineId));
    for (const s of this.#sender.statuses()) running.add(machineIdOf(s.diskKey));
    const stopped = [...running].filter((machineId) => !wanted.has(machineId));
    for (const machineId of stopped) await this.stop({ machineId });
    return { stopped };
  }

  async status({ machineId }: { machineId: string }): Promise<ReplicationStatus> {
    const [mirror, server] = await Promise.all([
      this.#mirrorStatus(machineId),
      this.#serverStatus(machineId),
    ]);
    return { ...this.#status(machineId), mirror, ...(server === null ? {} : { server }) };
  }

  async allowSender({ fingerprint }: { fingerprint: string }): Promise<void> {
    this.#receiver.allowSender(fingerprint);
    await this.#state.trustSender(fingerprint);
  }

  async resync({ machineId, full }: { machineId: string; full: boolean }): Promise<ResyncRequested> {
    const mine = this.#sender.statuses().filter((x) => isDiskOf(x.diskKey, machineId));
    if (mine.length === 0) {
      throw new HavenError(
        'operation_not_allowed',
        `machine '${machineId}' is not replicated from this host; start replication before a resync`,
        { machineId, allowed: ['replication.start'] },
      );
    }
    const disks: ResyncRequested['disks'] = [];
    for (const s of mine) {
      // The dirty bitmap knows what diverged; without it only comparing hashes can tell.
      const kind: DiskResyncKind = full ? 'full' : s.resyncRequired ? 'bitmap' : 'hash';
      const ticket = this.#sender.requestResync(s.diskKey, kind);
      disks.push({ diskId: diskIdOf(s.diskKey), kind, ...ticket });
    }
    return { machineId, disks };
  }

  /** Starts again what replicated before the agent stopped (views and disks are back by then). */
  async resume(): Promise<void> {
    for (const r of this.#state.replications) {
      await mkdir(join(this.#dataDir, 'replication', r.machineId), {
        recursive: true,
        mode: PRIVATE_DIR_MODE,
      });
      try {
        this.#startSending(r.machineId, r.diskIds, r.target, r.viewId);
      } catch {
        // Its view is gone: the vault sees the replication stopped and decides.
      }
    }
  }

  /**
   * The replica's block hashes of a disk sent from this host (`diskKey`:
   * `<machineId>/<diskId>`), once its receiver acknowledged every record of
   * the disk's journal: what a mirror sink compares a re-armed full copy
   * against (`DiskService.beginSinkCompare`). Progress is in the disk's
   * sender status (`replicaHashes`). Rejects with `unreachable` when the
   * link gives no answer within `timeoutMs` (default 2 min), `not_available`
   * when the replica store cannot hash.
   */
  replicaHashes(diskKey: string, options: { blockBytes: number; timeoutMs?: number }): Promise<BlockHashes> {
    return this.#sender.replicaHashes(diskKey, options);
  }

  /** Whether the disk is being sent from this host. */
  isSending(diskKey: string): boolean {
    return this.#sending.has(diskKey);
  }

  /** Whether any disk of the machine is being sent from this host. */
  sendsMachine(machineId: string): boolean {
    return this.#sender.statuses().some((s) => isDiskOf(s.diskKey, machineId));
  }

  /** Replicating from this view: it cannot be closed or merged under the sender. */
  refuseIfSendingView(viewId: string, what: string): void {
    const users = [...this.#sending.entries()].filter(([, f]) => f.viewId === viewId).map(([k]) => k);
    if (users.length > 0) {
      throw new HavenError(
        'operation_not_allowed',
        `view '${viewId}' is being replicated (${users.join(', ')}); stop replication before you ${what}`,
        { viewId, allowed: ['replication.stop'] },
      );
    }
  }

  close(): Promise<void> {
    return this.#sender.close();
  }

  #status(machineId: string): ReplicationStatus {
    const brokenDisks = brokenDiskPaths(machineId, this.#state.disks, this.#diskService, this.#notAttached);
    const broken = new Set(brokenDisks.map((d) => exportNameOf({ machineId, diskId: d.diskId })));
    return {
      ...machineReplicationStatus(machineId, this.#sender.statuses(), this.#sending, (exportName) =>
        broken.has(exportName) ? null : this.#diskService.journalStatus(exportName).lastWriteAt,
      ),
      brokenDisks,
    };
  }

  #senderHas(diskKey: string): boolean {
    return this.#sender.statuses().some((s) => s.diskKey === diskKey);
  }

  #senderStatePath(machineId: string, diskId: string): string {
    return join(this.#dataDir, 'replication', machineId, `${diskId}.json`);
  }

  #startSending(machineId: string, diskIds: string[], target: ReplicationTarget, viewId?: string): void {
    const [host, port] = splitAddress(target.address);
    for (const diskId of diskIds) {
      const diskKey = diskKeyOf(machineId, diskId);
      if (this.#senderHas(diskKey)) continue;
      let source: ReplicationSource;
      let from: SendingFrom;
      if (viewId === undefined) {
        const exportName = exportNameOf({ machineId, diskId });
        const backend = this.#diskService.backend(exportName) as JournaledBackend;
        source = backend;
        from = { journal: backend.journal, exportName, viewId: null };
      } else {
        const overlay = diskOf(this.#views.writable(viewId, machineId), diskId).view;
        source = overlay;
        from = { journal: overlay.journal, exportName: null, viewId };
      }
      this.#sender.addDisk({
        diskKey,
        source,
        receiver: { host, port, fingerprint: target.fingerprint },
        statePath: this.#senderStatePath(machineId, diskId),
      });
      this.#sending.set(diskKey, from);
    }
  }

  /**
   * Prepares the sender's state for the mode asked (before the sender starts):
   * whether to copy, compare hashes, or only stream. Written durably first, so
   * a restart redoes an interrupted compare rather than skipping it.
   */
  async #prepareMode(
    machineId: string,
    diskId: string,
    mode: Mode,
    overlay: OverlayView | null,
    extra: Region[],
  ): Promise<void> {
    const path = this.#senderStatePath(machineId, diskId);
    const current: SenderDiskState = await readSenderState(path);
    const hashCompare = overlay === null ? mode === 'delta' : mode === 'full';
    if (hashCompare) {
      await writeSenderState(path, { synced: true, sync: { kind: 'hash' } });
      // The compare covers every block: the view's diverged regions need no second copy.
      if (overlay?.journal.resyncRequired) {
        try {
          const plan = await overlay.beginResync();
          await overlay.journal.completeResync(plan);
        } catch {
          // The journal is full: the regions are copied once more after the compare; only bytes are lost.
        }
      }
      return;
    }
    if (mode === 'full') return;
    if (!current.synced) await writeSenderState(path, { synced: true, sync: current.sync });
    if (overlay !== null && mode === 'delta') {
      // Always at least one region: the reverse replica's first sync is what makes it consistent.
      const first = { offset: 0, length: Math.min(overlay.journal.regionSize, overlay.size) };
      await Promise.all([first, ...mergeRegions(extra)].map((r) => overlay.journal.markDirty([r])));
    }
  }
}

function diskOf(view: WritableView, diskId: string) {
  const disk = view.disks.find((d) => d.diskId === diskId);
  if (disk === undefined) {
    throw new HavenError('not_found', `view '${view.viewId}' has no disk '${diskId}'`, { diskId });
  }
  return disk;
}

function splitAddress(address: string): [string, number] {
  const colon = address.lastIndexOf(':');
  const port = Number(address.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port)) {
    throw new HavenError('bad_request', `replication address '${address}' is not host:port`, {
      field: 'address',
    });
  }
  return [address.slice(0, colon).replace(/^\[|\]$/g, ''), port];
}
