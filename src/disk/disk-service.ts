/**
 * The disk service: raw images served as named NBD exports, each through a
 * JournaledBackend with its own write journal, on a Unix socket and/or TCP
 * (optionally with TLS). Exports come and go at runtime; markers go into one
 * or several journals at one instant; the journal's consumer (the sender)
 * reaches each journal through `journal(name)`.
 */
import { resolve } from 'node:path';
import { HavenError } from '../errors/index.ts';
import {
  type NbdListenAddress,
  NbdMemoryBudget,
  NbdServer,
  type NbdServerCertTls,
  type NbdServerStats,
  type NbdServerTlsOptions,
} from '../nbd/index.ts';
import { removeStaleSocket } from '../nbd/stale-socket.ts';
import type { BlockHashes } from './block-hashes.ts';
import type { Region } from './dirty-bitmap.ts';
import type { JournalRecord, Marker } from './journal-record.ts';
import { JournaledBackend } from './journaled-backend.ts';
import type { MdLegView } from './md-superblock.ts';
import { QuiescingBackend } from './quiescing-backend.ts';
import { ServerLegBackend } from './server-leg-backend.ts';
import { SinkBackend, type SinkCompareStats } from './sink-backend.ts';
import type { JournalStatus, WriteJournal } from './write-journal.ts';

export const DEFAULT_JOURNAL_CAPACITY = 1 << 30;

/** Export names double as URI paths: keep them to characters no URI needs to escape. */
const EXPORT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface DiskServiceOptions {
  /** Unix socket to serve on (a stale socket file left by a crashed service is replaced). */
  socket?: string;
  /**
   * TCP address to serve on; port 0 picks a free port. Needs `tls` with a
   * `ca` (clients must present a certificate it signed) unless `insecureListen`.
   */
  listen?: { host: string; port: number };
  /** STARTTLS on the TCP listener (the Unix socket is local and stays plain); with `ca`, required, with client certificates. */
  tls?: NbdServerCertTls;
  /** Serve TCP without client certificates: anyone who reaches the port can read and write the disks. */
  insecureListen?: boolean;
  /**
   * A second TCP listener for physical servers' md legs (`serverLeg`
   * exports only): TLS required, client certificates from `tls.ca`, each
   * export served only to the certificate naming its machine.
   */
  servers?: {
    listen: { host: string; port: number };
    tls: NbdServerCertTls & { ca: string | Buffer };
    /** Why a server's certificate (CN = its machine) may open none of its legs now (e.g. it failed over), or null. */
    certificateRefused?: (machineId: string) => string | null;
  };
  /** Bytes of NBD requests and replies in memory across all connections (default 256 MiB). */
  memoryBytes?: number;
  /** Export served to clients that ask for the empty name. */
  defaultExport?: string;
  /** Journal capacity for exports attached without one (default 1 GiB). */
  journalCapacityBytes?: number;
  /** Where journals report switching to bitmap mode and failures (default: stderr). */
  log?: (line: string) => void;
}

export interface AttachOptions {
  /** The raw image to serve; absent for a sink. */
  imagePath?: string;
  /**
   * A journal-only sink (a mirror target) of this virtual size instead of an
   * image: writes are journaled and nothing else is kept (see SinkBackend).
   */
  sink?: { sizeBytes: number; syncIntervalMs?: number };
  /** Default: `<imagePath>.journal`; required for a sink. */
  journalDir?: string;
  journalCapacityBytes?: number;
  journalSegmentBytes?: number;
  /** Granularity of the overflow dirty bitmap (default 64 KiB). */
  regionSize?: number;
  description?: string;
  /**
   * A physical server's md leg (see ServerLegBackend): served on the
   * servers' listener to the certificate naming `machineId` (and on the
   * Unix socket), not on the ordinary TCP listener.
   */
  serverLeg?: { machineId: string };
}

export interface DiskExportInfo {
  name: string;
  /** The served image; null for a journal-only sink. */
  imagePath: string | null;
  /** A journal-only sink: the sequence of its first recovery point once its mirror is ready, else null. */
  sink: { readySeq: number | null } | null;
  journalDir: string;
  sizeBytes: number;
  /** The URI to give a hypervisor: the Unix socket's when there is one, else the TCP one. */
  uri: string;
  uris: { unix?: string; tcp?: string };
  /** Whether attaching found an unclean shutdown and brought the image up to the journal. */
  recovered: boolean;
  /** A server's md leg: what md last said of it, whether its flushes are points, whether the server is connected. */
  serverLeg: (MdLegView & { connected: boolean }) | null;
}

export interface ExportJournalStatus extends JournalStatus {
  name: string;
  /** Merged dirty ranges in the overflow bitmap, and the bytes they cover. */
  dirtyRegions: number;
  dirtyBytes: number;
  /** Last acknowledged write, trim or write-zeroes since the export was attached. */
  lastWriteAt: string | null;
}

export type DiskMarkerType = 'app-consistent' | 'group';

export type DiskMarker = Omit<Marker, 'type'> & { type: DiskMarkerType };

interface UnixListener {
  server: NbdServer;
  path: string;
}

interface TcpListener {
  server: NbdServer;
  address: { host: string; port: number };
  tls: boolean;
}

interface Attached {
  info: DiskExportInfo;
  backend: JournaledBackend | SinkBackend;
  /** A server's md leg, between the gate and the backend. */
  leg: ServerLegBackend | null;
  /** The server whose client certificate opens the leg (its machine id). */
  legOwner: string | null;
  gate: QuiescingBackend;
}

function infoOf(a: Attached): DiskExportInfo {
  const sink = a.backend instanceof SinkBackend ? { readySeq: a.backend.readySeq } : null;
  const serverLeg = a.leg === null ? null : { ...a.leg.view, connected: a.leg.connected };
  return { ...a.info, sink, serverLeg };
}

function unixUri(socket: string, name: string): string {
  return `nbd+unix:///${name}?socket=${socket}`;
}

function tcpUri(address: { host: string; port: number }, name: string, tls: boolean): string {
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `${tls ? 'nbds' : 'nbd'}://${host}:${address.port}/${name}`;
}

/**
 * The TCP listener's TLS: with a CA, clients must present a certificate it
 * signed (and TLS is required); without one, serving TCP must be asked for as
 * insecure, since NBD itself authenticates nobody.
 */
function tcpTls(options: DiskServiceOptions): NbdServerTlsOptions | undefined {
  if (options.tls?.ca !== undefined) return { ...options.tls, requestCert: true, required: true };
  if (options.listen !== undefined && options.insecureListen !== true) {
    throw new HavenError(
      'validation_failed',
      `serving NBD on TCP ${options.listen.host}:${options.listen.port} needs client certificates ` +
        '(a TLS certificate, key and the CA that signs the clients: --tls-cert, --tls-key, --tls-ca); ' +
        'without them anyone reaching the port could read and write the disks (--insecure-listen allows that)',
      { field: 'listen', allowed: ['tls-ca', 'insecure-listen'] },
    );
  }
  return options.tls;
}

function checkMarkerType(marker: DiskMarker): void {
  if (marker.type !== 'app-consistent' && marker.type !== 'group') {
    throw new HavenError(
      'validation_failed',
      `marker type '${String(marker.type)}' is not one of app-consistent, group`,
      { field: 'type' },
    );
  }
}

export class DiskService {
  readonly #unix: UnixListener | null;
  readonly #tcp: TcpListener | null;
  readonly #servers: TcpListener | null;
  readonly #exports = new Map<string, Attached>();
  /** Names being attached, so two attaches of one name cannot race. */
  readonly #attaching = new Set<string>();
  readonly #journalCapacity: number;
  readonly #log: ((line: string) => void) | undefined;
  #closed = false;

  private constructor(
    unix: UnixListener | null,
    tcp: TcpListener | null,
    servers: TcpListener | null,
    journalCapacity: number,
    log: ((line: string) => void) | undefined,
  ) {
    this.#unix = unix;
    this.#tcp = tcp;
    this.#servers = servers;
    this.#journalCapacity = journalCapacity;
    this.#log = log;
  }

  /** Starts listening (on the socket, the TCP address or both); exports are attached afterwards. */
  static async start(options: DiskServiceOptions): Promise<DiskService> {
    if (options.socket === undefined && options.listen === undefined) {
      throw new HavenError('validation_failed', 'the disk service needs a Unix socket or a TCP address', {
        field: 'socket',
      });
    }
    const tls = tcpTls(options);
    const memory = new NbdMemoryBudget({
      ...(options.memoryBytes === undefined ? {} : { totalBytes: options.memoryBytes }),
      ...(options.log === undefined ? {} : { log: options.log }),
    });
    const shared = {
      ...(options.defaultExport === undefined ? {} : { defaultExport: options.defaultExport }),
      memory,
    };
    let unix: UnixListener | null = null;
    let tcp: TcpListener | null = null;
    let servers: TcpListener | null = null;
    try {
      if (options.socket !== undefined) {
        const path = resolve(options.socket);
        await removeStaleSocket(path);
        const server = new NbdServer(shared);
        await server.listen({ path });
        unix = { server, path };
      }
      if (options.listen !== undefined) {
        const server = new NbdServer({ ...shared, ...(tls ? { tls } : {}) });
        const bound = (await server.listen(options.listen)) as Extract<NbdListenAddress, { port: number }>;
        tcp = { server, address: { host: options.listen.host, port: bound.port }, tls: !!tls };
      }
      if (options.servers !== undefined) {
        const server = new NbdServer({
          ...shared,
          tls: { ...options.servers.tls, requestCert: true, required: true },
          ...(options.servers.certificateRefused === undefined
            ? {}
            : { certificateRefused: options.servers.certificateRefused }),
          ...(options.log === undefined ? {} : { log: options.log }),
        });
        const bound = (await server.listen(options.servers.listen)) as Extract<
          NbdListenAddress,
          { port: number }
        >;
        servers = { server, address: { host: options.servers.listen.host, port: bound.port }, tls: true };
      }
    } catch (e) {
      await unix?.server.close();
      await tcp?.server.close();
      throw e;
    }
    return new DiskService(
      unix,
      tcp,
      servers,
      options.journalCapacityBytes ?? DEFAULT_JOURNAL_CAPACITY,
      options.log,
    );
  }

  /** Where the service listens: the socket path and/or the bound TCP address. */
  get addresses(): {
    socket?: string;
    tcp?: { host: string; port: number };
    servers?: { host: string; port: number };
  } {
    return {
      ...(this.#unix ? { socket: this.#unix.path } : {}),
      ...(this.#tcp ? { tcp: this.#tcp.address } : {}),
      ...(this.#servers ? { servers: this.#servers.address } : {}),
    };
  }

  /**
   * Opens the image through a journaling backend (recovering from an unclean
   * shutdown first) and exports it. An image or journal can be attached once.
   */
  async attach(name: string, options: AttachOptions): Promise<DiskExportInfo> {
    this.#checkOpen();
    if (!EXPORT_NAME.test(name)) {
      throw new HavenError(
        'validation_failed',
        `export name '${name.slice(0, 64)}' may only hold letters, digits, '.', '_' and '-' (at most 128, starting with a letter or digit)`,
        { field: 'name', value: name.slice(0, 128) },
      );
    }
    if (this.#exports.has(name) || this.#attaching.has(name)) {
      throw new HavenError('conflict', `export '${name}' is already attached; detach it first`, { name });
    }
    const sink = options.sink ?? null;
    const serverLeg = options.serverLeg ?? null;
    if (serverLeg !== null && (sink !== null || this.#servers === null)) {
      throw new HavenError(
        'validation_failed',
        sink !== null
          ? `export '${name}' cannot be both a sink and a server's leg`
          : `export '${name}' is a server's leg, but this disk service has no listener for servers`,
        { field: 'serverLeg' },
      );
    }
    if ((sink === null) === (options.imagePath === undefined)) {
      throw new HavenError('validation_failed', `export '${name}' needs either an image or a sink size`, {
        field: sink === null ? 'imagePath' : 'sink',
      });
    }
    if (sink !== null && options.journalDir === undefined) {
      throw new HavenError('validation_failed', `sink export '${name}' needs a journal directory`, {
        field: 'journalDir',
      });
    }
    const imagePath = options.imagePath === undefined ? null : resolve(options.imagePath);
    const journalDir = resolve(options.journalDir ?? `${options.imagePath}.journal`);
    for (const other of this.#exports.values()) {
      if (
        (imagePath !== null && other.info.imagePath === imagePath) ||
        other.info.journalDir === journalDir
      ) {
        throw new HavenError(
          'conflict',
          `image '${imagePath}' or journal '${journalDir}' is already attached as export '${other.info.name}'`,
          { name: other.info.name },
        );
      }
    }
    this.#attaching.add(name);
    try {
      const common = {
        journalDir,
        journalCapacityBytes: options.journalCapacityBytes ?? this.#journalCapacity,
        ...(options.journalSegmentBytes === undefined
          ? {}
          : { journalSegmentBytes: options.journalSegmentBytes }),
        ...(options.regionSize === undefined ? {} : { regionSize: options.regionSize }),
        ...(this.#log === undefined ? {} : { log: this.#log }),
      };
      const backend =
        sink === null
          ? await JournaledBackend.open({ ...common, imagePath: imagePath as string })
          : await SinkBackend.open({
              ...common,
              sizeBytes: sink.sizeBytes,
              ...(sink.syncIntervalMs === undefined ? {} : { syncIntervalMs: sink.syncIntervalMs }),
            });
      const leg =
        serverLeg !== null && backend instanceof JournaledBackend
          ? await ServerLegBackend.open(backend)
          : null;
      const gate = new QuiescingBackend(leg ?? backend);
      const tcp = leg === null ? this.#tcp : this.#servers;
      const uris: DiskExportInfo['uris'] = {};
      if (this.#unix) uris.unix = unixUri(this.#unix.path, name);
      if (tcp) uris.tcp = tcpUri(tcp.address, name, tcp.tls);
      const info: DiskExportInfo = {
        name,
        imagePath,
        sink: backend instanceof SinkBackend ? { readySeq: backend.readySeq } : null,
        journalDir,
        sizeBytes: backend.size,
        uri: uris.unix ?? uris.tcp ?? '',
        uris,
        recovered: backend.recovered,
        serverLeg: null,
      };
      const exp = {
        backend: gate,
        description:
          options.description ?? (imagePath === null ? 'journal-only sink' : `journaled image ${imagePath}`),
        // QEMU's mirror lost its sink: a write it could not deliver may follow, so no point until it is checked again.
        ...(backend instanceof SinkBackend ? { onConnectionClosed: () => void backend.markNotReady() } : {}),
        ...(leg === null || serverLeg === null
          ? {}
          : {
              certificateName: serverLeg.machineId,
              onConnectionOpened: () => leg.connectionOpened(),
              onConnectionClosed: () => leg.connectionClosed(),
            }),
      };
      this.#unix?.server.addExport(name, exp);
      tcp?.server.addExport(name, exp);
      const attached = { info, backend, leg, legOwner: serverLeg?.machineId ?? null, gate };
      this.#exports.set(name, attached);
      return infoOf(attached);
    } finally {
      this.#attaching.delete(name);
    }
  }

  /**
   * Ends the servers' listener connections to the legs of `machineId` (a
   * server that must stay off); the legs stay attached. Whether it may
   * connect again is the listener's `certificateRefused`.
   */
  async disconnectServer(machineId: string): Promise<void> {
    const legs = [...this.#exports.values()].filter((a) => a.leg !== null && a.legOwner === machineId);
    await Promise.all(legs.map((a) => this.#servers?.server.disconnectExport(a.info.name)));
  }

  /** Ends the export's connections (their requests in flight are answered), flushes and closes it. */
  async detach(name: string): Promise<void> {
    const attached = this.#get(name);
    this.#exports.delete(name);
    await Promise.all([
      this.#unix?.server.removeExport(name),
      (attached.leg === null ? this.#tcp : this.#servers)?.server.removeExport(name),
    ]);
    await this.#closeBackend(attached);
  }

  list(): DiskExportInfo[] {
    return [...this.#exports.values()].map((a) => infoOf(a));
  }

  info(name: string): DiskExportInfo {
    return infoOf(this.#get(name));
  }

  /**
   * A sink's mirror job reached READY (QEMU's BLOCK_JOB_READY): cuts its
   * first recovery point (a flush record once the journal is durable) and
   * remembers it; every later prefix of its journal is crash-consistent.
   */
  async markSinkReady(name: string): Promise<JournalRecord> {
    this.#checkOpen();
    return await this.#sink(name).markReady();
  }

  /**
   * A server's agent reported the leg's array whole and idle at md event
   * `events` (see ServerLegBackend.confirmInSync). Not a server leg: refused.
   */
  async confirmServerLeg(name: string, events: bigint): Promise<void> {
    this.#checkOpen();
    const leg = this.#get(name).leg;
    if (leg === null) {
      throw new HavenError('operation_not_allowed', `export '${name}' is not a server's md leg`, { name });
    }
    await leg.confirmInSync(events);
  }

  /** A sink's mirror job ended: no recovery point is cut on it until it is ready again. */
  async markSinkNotReady(name: string): Promise<void> {
    await this.#sink(name).markNotReady();
  }

  /**
   * Opens a sink's compare window with the replica's block hashes, while its
   * mirror is re-armed with a full copy: whole blocks the replica already
   * holds are not journaled (see SinkBackend). Refused on a ready sink.
   */
  beginSinkCompare(name: string, hashes: BlockHashes): void {
    this.#checkOpen();
    this.#sink(name).beginCompare(hashes);
  }

  /** Closes a sink's compare window (before `markSinkReady`); returns the bytes it compared, skipped and journaled. */
  endSinkCompare(name: string): SinkCompareStats {
    return this.#sink(name).endCompare();
  }

  /**
   * Cuts a crash-consistent recovery point on a ready sink: QEMU never
   * forwards guest flushes to a mirror target, so Haven cuts the sink's points.
   */
  async cutPoint(name: string): Promise<JournalRecord> {
    this.#checkOpen();
    return await this.#sink(name).cutPoint();
  }

  #sink(name: string): SinkBackend {
    const { backend } = this.#get(name);
    if (!(backend instanceof SinkBackend)) {
      throw new HavenError(
        'operation_not_allowed',
        `export '${name}' serves an image, not a journal-only sink; its points come from flushes and markers`,
        { name, allowed: ['insertMarker'] },
      );
    }
    return backend;
  }

  /** The export's journal, for its consumer: `records`, `trimThrough`, `beginResync`... */
  journal(name: string): WriteJournal {
    return this.#get(name).backend.journal;
  }

  /** The export's journaling backend (e.g. `beginResync`, which also waits for the image). */
  backend(name: string): JournaledBackend | SinkBackend {
    return this.#get(name).backend;
  }

  journalStatus(name: string): ExportJournalStatus {
    const { backend, gate } = this.#get(name);
    const regions = backend.journal.dirtyRegions();
    return {
      name,
      ...backend.journal.status,
      dirtyRegions: regions.length,
      dirtyBytes: regions.reduce((n, r) => n + r.length, 0),
      lastWriteAt: gate.lastChangeMs === null ? null : new Date(gate.lastChangeMs).toISOString(),
    };
  }

  /** Merged byte ranges written while the journal was full (to be resynced). */
  dirtyRegions(name: string): Region[] {
    return this.#get(name).backend.journal.dirtyRegions();
  }

  /** Inserts a marker into one export's journal; see `insertMarkers`. */
  async insertMarker(name: string, marker: DiskMarker): Promise<JournalRecord> {
    const [record] = await this.insertMarkers([name], marker);
    return record as JournalRecord;
  }

  /**
   * Inserts the same marker into the journals of several exports at one
   * instant: new writes to all of them are held, the running ones finish,
   * every image and journal is flushed (so the marker follows a
   * crash-consistent boundary), the markers are appended, and writes go on.
   * Resolves with each export's marker record, in the order given.
   */
  async insertMarkers(names: readonly string[], marker: DiskMarker): Promise<JournalRecord[]> {
    this.#checkOpen();
    checkMarkerType(marker);
    this.#refuseUnmarkable([...new Set(names)].map((name) => this.#get(name)));
    const release = await this.holdChanges(names);
    try {
      return await this.appendMarkers(names, marker);
    } finally {
      release();
    }
  }

  /**
   * Holds new changes (writes, trims, write-zeroes) to the exports until the
   * returned function is called; resolves once the running ones are done.
   * The caller must call it, whatever happens: a multi-host cut
   * (`appendMarkers` on each host while all of them hold) bounds it with a timer.
   */
  async holdChanges(names: readonly string[]): Promise<() => void> {
    this.#checkOpen();
    const targets = [...new Set(names)].map((name) => this.#get(name));
    // Quiesce in a fixed (name) order so two concurrent calls cannot wait on each other.
    const ordered = [...targets].sort((a, b) => (a.info.name < b.info.name ? -1 : 1));
    const releases: Array<() => void> = [];
    const releaseAll = (): void => {
      for (const release of releases.splice(0)) release();
    };
    try {
      for (const t of ordered) releases.push(await t.gate.quiesce());
    } catch (error) {
      releaseAll();
      throw error;
    }
    return releaseAll;
  }

  /**
   * Flushes the exports and appends the same marker to each journal; the
   * caller holds their changes (`holdChanges`), which makes it one instant.
   */
  async appendMarkers(
    names: readonly string[],
    marker: DiskMarker,
    options: { stillHeld?: () => boolean } = {},
  ): Promise<JournalRecord[]> {
    this.#checkOpen();
    checkMarkerType(marker);
    const targets = [...new Set(names)].map((name) => this.#get(name));
    this.#refuseUnmarkable(targets);
    // A sink's NBD flush adds no flush record: cut one, so the marker follows a crash-consistent boundary.
    await Promise.all(
      targets.map((t) =>
        t.backend instanceof SinkBackend ? t.backend.cutPoint() : (t.leg ?? t.backend).flush(),
      ),
    );
    // A journal places a marker when it is called (synchronously): checked here, no released write comes before it.
    if (options.stillHeld && !options.stillHeld()) {
      throw new HavenError(
        'conflict',
        `changes to ${names.join(', ')} are no longer held; no marker was added`,
        {
          exports: names,
        },
      );
    }
    return await Promise.all(targets.map((t) => t.backend.journal.addMarker({ ...marker })));
  }

  /** Refuse before holding anything, so a full journal does not leave the others with a lone marker. */
  #refuseUnmarkable(targets: readonly Attached[]): void {
    const refuse = (
      cannot: (t: Attached) => boolean,
      message: (names: string) => string,
      details: Record<string, unknown>,
    ) => {
      const found = targets.filter(cannot).map((t) => t.info.name);
      if (found.length === 0) return;
      const names = found.map((n) => `'${n}'`).join(', ');
      throw new HavenError('operation_not_allowed', message(names), { exports: found, ...details });
    };
    refuse(
      (t) => t.backend instanceof SinkBackend && t.backend.readySeq === null,
      (names) => `the sinks ${names} have no consistent point yet: their mirrors are not ready`,
      { state: 'mirror-not-ready', allowed: ['markSinkReady'] },
    );
    refuse(
      (t) => t.leg !== null && !t.leg.view.pointsAllowed,
      (names) =>
        `the server legs ${names} are not in sync (md resyncing, rebuilding or disconnected): no point can be cut on them yet`,
      { state: 'leg-not-in-sync', allowed: ['wait for md to report the leg in sync'] },
    );
    refuse(
      (t) => t.backend.journal.mode === 'bitmap',
      (names) =>
        `the journals of ${names} are full and record dirty regions only; markers can be inserted again after a resync`,
      { mode: 'bitmap', allowed: ['resync'] },
    );
  }

  stats(): NbdServerStats {
    const all = [this.#unix, this.#tcp, this.#servers].flatMap((l) => (l ? [l.server.stats()] : []));
    const sum = (key: keyof NbdServerStats) => all.reduce((n, s) => n + s[key], 0);
    return {
      connections: sum('connections'),
      inFlightRequests: sum('inFlightRequests'),
      inFlightBytes: sum('inFlightBytes'),
      bufferedBytes: sum('bufferedBytes'),
    };
  }

  /**
   * Stops listening, ends every connection (answering requests in flight),
   * then flushes and closes every export. Closing twice is harmless.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([this.#unix?.server.close(), this.#tcp?.server.close(), this.#servers?.server.close()]);
    const attached = [...this.#exports.values()];
    this.#exports.clear();
    const results = await Promise.allSettled(attached.map((a) => this.#closeBackend(a)));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  async #closeBackend(attached: Attached): Promise<void> {
    try {
      // A clean stop is a crash-consistent boundary too (for a leg: when md holds it in sync).
      await (attached.leg ?? attached.backend).flush();
    } finally {
      await attached.backend.close();
    }
  }

  #get(name: string): Attached {
    const attached = this.#exports.get(name);
    if (attached === undefined) {
      throw new HavenError(
        'not_found',
        `export '${name}' is not attached to this disk service (attached: ${[...this.#exports.keys()].join(', ') || 'none'})`,
        { kind: 'export', id: name },
      );
    }
    return attached;
  }

  #checkOpen(): void {
    if (this.#closed) {
      throw new HavenError('operation_not_allowed', 'the disk service is closed', { state: 'closed' });
    }
  }
}
