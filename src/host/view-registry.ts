/**
 * The point-in-time views open on this host, each disk exported over NBD on
 * the host's view socket (recovery machines run from them). A view is
 * read-only (a test copy) or writable: then its disks are overlays whose
 * writes are journaled, so reprotect can send them back.
 *
 * A view opened for access (`haven view`, `haven export`) is also served on
 * the host's access port over TCP, only with TLS and its own pre-shared key,
 * until it expires or is closed; its writes (a writable view) are dropped
 * when it closes, never reaching the replica.
 */
import { HavenError } from '../errors/index.ts';
import type { BlockBackend } from '../nbd/block-backend.ts';
import { NbdServer, removeStaleSocket } from '../nbd/index.ts';
import type { OverlayView, PointView, ReplicaStore } from '../replica/index.ts';
import { regionBytes } from '../replica/index.ts';
import { diskKeyOf } from './disk-key.ts';
import { orFreePort } from './free-port-fallback.ts';
import type { PointView as HostPointView, ViewDiskStatus } from './host-services.ts';

export interface ViewDisk<V extends PointView | OverlayView> {
  diskId: string;
  diskKey: string;
  seq: number;
  exportName: string;
  view: V;
}

interface ViewOf<Writable extends boolean, V extends PointView | OverlayView> {
  viewId: string;
  machineId: string;
  pointId: string;
  writable: Writable;
  disks: ViewDisk<V>[];
  access?: OpenAccess;
}

/** What opens a view to NBD clients over TCP: the TLS-PSK identity and key, until when. */
export interface ViewAccess {
  identity: string;
  key: Buffer;
  expiresAt: Date;
}

interface OpenAccess {
  identity: string;
  expiresAt: Date;
  timer: NodeJS.Timeout;
}

/** Where access views are served: the TCP listener, and the host name clients use in URIs. */
export interface AccessListen {
  host: string;
  port: number;
  advertiseHost?: string;
  /**
   * The port is the default, not the operator's: when it is taken (another
   * host agent on this machine, as `haven up` runs two), a free one is used
   * instead, since the URIs handed out name it anyway.
   */
  portIsDefault?: boolean;
}

export type ReadOnlyView = ViewOf<false, PointView>;
export type WritableView = ViewOf<true, OverlayView>;
export type OpenView = ReadOnlyView | WritableView;

export interface ViewRequest {
  viewId: string;
  machineId: string;
  pointId: string;
  writable: boolean;
  /** Per disk id, the sequence of the replica disk the view shows. */
  seqs: Record<string, number>;
  /** Writable views of a failover: the replica refuses the old primary's records from now on. */
  failover: boolean;
  access?: ViewAccess;
}

interface AccessServer {
  server: NbdServer;
  /** host:port as clients dial it. */
  authority: string;
  keys: Map<string, Buffer>;
}

type ViewIds = Pick<ViewRequest, 'viewId' | 'machineId' | 'pointId'>;

export class ViewRegistry {
  /** The unix socket the views' NBD exports are served on. */
  readonly socket: string;
  readonly #store: ReplicaStore;
  readonly #server: NbdServer;
  readonly #views = new Map<string, OpenView>();
  readonly #access: AccessServer | null;

  private constructor(
    store: ReplicaStore,
    server: NbdServer,
    socket: string,
    access: AccessServer | null = null,
  ) {
    this.#store = store;
    this.#server = server;
    this.socket = socket;
    this.#access = access;
  }

  /**
   * Serves views of the store's disks on `socket` (a stale socket of a crashed
   * agent is removed), and access views on `access` when given.
   */
  static async listen(store: ReplicaStore, socket: string, access?: AccessListen): Promise<ViewRegistry> {
    const server = new NbdServer();
    await removeStaleSocket(socket);
    await server.listen({ path: socket });
    if (access === undefined) return new ViewRegistry(store, server, socket);
    const keys = new Map<string, Buffer>();
    const accessServer = new NbdServer({
      tls: { psk: (identity) => keys.get(identity) ?? null, required: true },
    });
    const bound = await orFreePort((port) => accessServer.listen({ host: access.host, port }), access.port, {
      allowed: access.portIsDefault === true,
      taken: () =>
        console.error(
          `haven: port ${access.port} is taken; views opened for access are served on a free port`,
        ),
    });
    const port = 'port' in bound ? bound.port : access.port;
    const host = access.advertiseHost ?? access.host;
    const authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    return new ViewRegistry(store, server, socket, { server: accessServer, authority, keys });
  }

  get(viewId: string): OpenView | undefined {
    return this.#views.get(viewId);
  }

  /** The machine's writable view, or not_found. */
  writable(viewId: string, machineId: string): WritableView {
    const opened = this.#views.get(viewId);
    if (opened === undefined || !opened.writable || opened.machineId !== machineId) {
      throw new HavenError(
        'not_found',
        `no writable view '${viewId}' of machine '${machineId}' is open on this host`,
        { kind: 'view', id: viewId },
      );
    }
    return opened;
  }

  /** Overlays of writable views that show the disk at `seq`. */
  overlaysAt(diskKey: string, seq: number): OverlayView[] {
    return [...this.#views.values()].flatMap((opened) =>
      opened.writable
        ? opened.disks.filter((d) => d.diskKey === diskKey && d.seq === seq).map((d) => d.view)
        : [],
    );
  }

  /** An open view's disk as a block device. */
  backend(viewId: string, diskId: string): BlockBackend {
    const found = this.#views.get(viewId)?.disks.find((d) => d.diskId === diskId);
    if (found === undefined) throw new HavenError('not_found', `view '${viewId}' has no disk '${diskId}'`);
    return found.view;
  }

  /**
   * Opens and exports every disk of the view. A writable view resumes the
   * overlays kept under its id; on failure only the overlays this call made
   * are dropped, so resumed ones keep their writes.
   */
  async open(request: ViewRequest): Promise<OpenView> {
    const { viewId, machineId, pointId, seqs } = request;
    const ids = { viewId, machineId, pointId };
    let opened: OpenView;
    if (request.writable) {
      const made: string[] = [];
      try {
        const disks = await this.#exportDisks(ids, seqs, async (diskKey, seq) => {
          const kept = (await this.#store.keptView(diskKey, viewId)) !== null;
          const view = await this.#store.openView(diskKey, seq, {
            writable: true,
            viewId,
            ...(request.failover ? { seal: true } : {}),
          });
          if (!kept) made.push(diskKey);
          return view;
        });
        opened = { ...ids, writable: true, disks };
      } catch (error) {
        for (const diskKey of made) await this.#store.discardView(diskKey, viewId);
        throw error;
      }
    } else {
      const disks = await this.#exportDisks(ids, seqs, (diskKey, seq) => this.#store.openView(diskKey, seq));
      opened = { ...ids, writable: false, disks };
    }
    if (request.access !== undefined) {
      try {
        opened.access = this.#serveAccess(opened, request.access);
      } catch (error) {
        await this.close(opened, true);
        throw error;
      }
    }
    this.#views.set(viewId, opened);
    return opened;
  }

  #serveAccess(opened: OpenView, access: ViewAccess): OpenAccess {
    const served = this.#access;
    if (served === null) {
      throw new HavenError('not_available', `this host serves no views over TCP (its access port is off)`, {
        viewId: opened.viewId,
      });
    }
    if (served.keys.has(access.identity)) {
      throw new HavenError('conflict', `a view with access identity '${access.identity}' is already open`, {
        viewId: opened.viewId,
      });
    }
    served.keys.set(access.identity, access.key);
    for (const d of opened.disks) {
      served.server.addExport(d.exportName, {
        backend: d.view,
        description: `${d.diskKey} at ${opened.pointId}`,
        pskIdentity: access.identity,
      });
    }
    const delay = Math.max(0, access.expiresAt.getTime() - Date.now());
    const timer = setTimeout(
      () => {
        if (this.#views.get(opened.viewId) === opened) void this.close(opened, true).catch(() => {});
      },
      Math.min(delay, 2 ** 31 - 1),
    );
    timer.unref();
    return { identity: access.identity, expiresAt: access.expiresAt, timer };
  }

  /** Stops serving the view and closes its disks; `discardWrites` also deletes a writable view's overlays. */
  async close(opened: OpenView, discardWrites: boolean): Promise<void> {
    this.#views.delete(opened.viewId);
    await this.#endAccess(opened);
    for (const d of opened.disks) {
      await this.#closeDisk(d);
      if (discardWrites && opened.writable) await this.#store.discardView(d.diskKey, opened.viewId);
    }
  }

  /** The view as the vault sees it, with each writable disk's reprotect status. */
  async describe(opened: OpenView): Promise<HostPointView> {
    const info: HostPointView = {
      viewId: opened.viewId,
      machineId: opened.machineId,
      pointId: opened.pointId,
      writable: opened.writable,
      disks: opened.disks.map((d) => ({
        diskId: d.diskId,
        nbdUri: `nbd+unix:///${d.exportName}?socket=${this.socket}`,
        sizeBytes: d.view.size,
        ...(opened.access && this.#access
          ? { accessUri: `nbds://${opened.access.identity}@${this.#access.authority}/${d.exportName}` }
          : {}),
      })),
      ...(opened.access ? { expiresAt: opened.access.expiresAt.toISOString() } : {}),
    };
    if (!opened.writable) return info;
    for (const [i, d] of opened.disks.entries()) {
      const kept = await this.#store.keptView(d.diskKey, opened.viewId);
      const j = d.view.journal.status;
      const status: ViewDiskStatus = {
        divergedBytes: kept?.divergedBytes ?? 0,
        dirtyBytes: regionBytes(d.view.journal.dirtyRegions()),
        journal: { firstSeq: j.firstSeq, nextSeq: j.nextSeq, usedBytes: j.usedBytes, mode: j.mode },
      };
      const disk = info.disks[i];
      if (disk !== undefined) disk.status = status;
    }
    return info;
  }

  /** Closes every view (their overlays are kept) and stops serving. */
  async closeAll(): Promise<void> {
    for (const opened of this.#views.values()) {
      await this.#endAccess(opened).catch(() => {});
      await this.#closeDisks(opened.disks).catch(() => {});
    }
    await this.#server.close();
    await this.#access?.server.close();
  }

  /** Stops serving the view over TCP: its connections end, its key is forgotten. */
  async #endAccess(opened: OpenView): Promise<void> {
    const access = opened.access;
    const served = this.#access;
    if (access === undefined || served === null) return;
    clearTimeout(access.timer);
    served.keys.delete(access.identity);
    for (const d of opened.disks) await served.server.removeExport(d.exportName);
  }

  async #exportDisks<V extends PointView | OverlayView>(
    ids: ViewIds,
    seqs: Record<string, number>,
    openDisk: (diskKey: string, seq: number) => Promise<V>,
  ): Promise<ViewDisk<V>[]> {
    const disks: ViewDisk<V>[] = [];
    try {
      for (const [diskId, seq] of Object.entries(seqs)) {
        const diskKey = diskKeyOf(ids.machineId, diskId);
        const view = await openDisk(diskKey, seq);
        const exportName = `${ids.viewId}.${diskId}`;
        disks.push({ diskId, diskKey, seq, exportName, view });
        this.#server.addExport(exportName, { backend: view, description: `${diskKey} at ${ids.pointId}` });
      }
    } catch (error) {
      await this.#closeDisks(disks);
      throw error;
    }
    return disks;
  }

  async #closeDisks(disks: ViewDisk<PointView | OverlayView>[]): Promise<void> {
    for (const d of disks) await this.#closeDisk(d);
  }

  async #closeDisk(disk: ViewDisk<PointView | OverlayView>): Promise<void> {
    await this.#server.removeExport(disk.exportName);
    await disk.view.close();
  }
}
