/**
 * What the vault asked of this host's data path (attached disks,
 * replications, trusted senders, writable views), kept in one JSON file so a
 * restarted agent sets it all up again and replication resumes on its own.
 * Every change is written before it is acknowledged.
 */
import { writeFileAtomic } from '../storage/atomic-file.ts';
import { readOptionalText } from '../storage/optional-file.ts';
import type { DiskRef, MirroredDisk, ReplicationTarget } from './host-services.ts';

export interface SavedDisk extends DiskRef {
  source: string;
  sizeBytes: number;
  /** A journal-only sink (mirror target) of the machine's own disk `source`. */
  sink?: boolean;
  /** A physical server's md leg for its device `source`, staged in the data directory. */
  serverLeg?: boolean;
}

/** A domain whose disks QEMU mirrors into sinks (the mirror service keeps it armed). */
export interface SavedMirror {
  machineId: string;
  domain: string;
  disks: MirroredDisk[];
  /** The replica was seeded from an image: the first arm compares too (see `Mirror.protect`). */
  seeded?: boolean;
  /** An operator paused protection (`Mirror.pause`): nothing is armed until resumed. */
  paused?: boolean;
}

export interface SavedReplication {
  machineId: string;
  diskIds: string[];
  target: ReplicationTarget;
  /** Replicating from a writable view (reprotect) instead of the disk service. */
  viewId?: string;
}

/** A writable view open when the agent stopped: reopened, since a recovery machine runs from it. */
export interface SavedView {
  viewId: string;
  machineId: string;
  pointId: string;
  /** Per disk id, the sequence the view shows. */
  seqs: Record<string, number>;
}

/**
 * A writable view opened for access (`haven view --writable`): its overlay is
 * dropped when it closes, and never reopened (its key lived in memory only),
 * so one left by a crash is swept at the next start.
 */
export interface SavedAccessOverlay {
  viewId: string;
  machineId: string;
}

interface HostState {
  disks: SavedDisk[];
  replications: SavedReplication[];
  trustedSenders: string[];
  /** Absent in files written before views were kept. */
  views?: SavedView[];
  /** The replication port a free-port start bound first, asked for again after a restart. */
  receiverPort?: number;
  /** Absent in files written before live protection. */
  mirrors?: SavedMirror[];
  /** Absent in files written before access overlays were recorded. */
  accessOverlays?: SavedAccessOverlay[];
}

export class HostStateFile {
  readonly path: string;
  readonly #state: HostState;

  private constructor(path: string, state: HostState) {
    this.path = path;
    this.#state = state;
  }

  /** The saved state, or an empty one when the host never saved any. */
  static async load(path: string): Promise<HostStateFile> {
    const text = await readOptionalText(path);
    return new HostStateFile(
      path,
      text === null ? { disks: [], replications: [], trustedSenders: [] } : (JSON.parse(text) as HostState),
    );
  }

  get disks(): readonly SavedDisk[] {
    return this.#state.disks;
  }

  get replications(): readonly SavedReplication[] {
    return this.#state.replications;
  }

  get trustedSenders(): readonly string[] {
    return this.#state.trustedSenders;
  }

  get views(): readonly SavedView[] {
    return this.#state.views ?? [];
  }

  get mirrors(): readonly SavedMirror[] {
    return this.#state.mirrors ?? [];
  }

  async setMirror(mirror: SavedMirror): Promise<void> {
    this.#state.mirrors = [...this.mirrors.filter((m) => m.machineId !== mirror.machineId), mirror];
    await this.#save();
  }

  async removeMirror(machineId: string): Promise<void> {
    if (!this.mirrors.some((m) => m.machineId === machineId)) return;
    this.#state.mirrors = this.mirrors.filter((m) => m.machineId !== machineId);
    await this.#save();
  }

  get receiverPort(): number | null {
    return this.#state.receiverPort ?? null;
  }

  async setReceiverPort(port: number): Promise<void> {
    this.#state.receiverPort = port;
    await this.#save();
  }

  async addDisk(disk: SavedDisk): Promise<void> {
    if (this.#state.disks.some((d) => d.machineId === disk.machineId && d.diskId === disk.diskId)) return;
    this.#state.disks.push({ ...disk });
    await this.#save();
  }

  async removeDisk(ref: DiskRef): Promise<void> {
    this.#state.disks = this.#state.disks.filter(
      (d) => !(d.machineId === ref.machineId && d.diskId === ref.diskId),
    );
    await this.#save();
  }

  /** A machine replicates one way at a time: this replaces what it did before. */
  async setReplication(replication: SavedReplication): Promise<void> {
    this.#state.replications = [
      ...this.#state.replications.filter((r) => r.machineId !== replication.machineId),
      replication,
    ];
    await this.#save();
  }

  async removeReplication(machineId: string): Promise<void> {
    this.#state.replications = this.#state.replications.filter((r) => r.machineId !== machineId);
    await this.#save();
  }

  async trustSender(fingerprint: string): Promise<void> {
    if (this.#state.trustedSenders.includes(fingerprint)) return;
    this.#state.trustedSenders.push(fingerprint);
    await this.#save();
  }

  async saveView(view: SavedView): Promise<void> {
    this.#state.views = [...this.views.filter((v) => v.viewId !== view.viewId), view];
    await this.#save();
  }

  async forgetView(viewId: string): Promise<void> {
    if (!this.views.some((v) => v.viewId === viewId)) return;
    this.#state.views = this.views.filter((v) => v.viewId !== viewId);
    await this.#save();
  }

  get accessOverlays(): readonly SavedAccessOverlay[] {
    return this.#state.accessOverlays ?? [];
  }

  /** Replaces the recorded access overlays (written before the overlays they name are made). */
  async setAccessOverlays(overlays: SavedAccessOverlay[]): Promise<void> {
    this.#state.accessOverlays = overlays;
    await this.#save();
  }

  #save(): Promise<void> {
    return writeFileAtomic(this.path, `${JSON.stringify(this.#state, null, 2)}\n`);
  }
}
