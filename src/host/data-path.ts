/**
 * A host's data path: the disk service (protected disks, write journals),
 * the replication sender and receiver, and the replica store with its
 * point-in-time views. Every host runs all of them, because a host is the
 * primary for some machines and the recovery site for others, and reprotect
 * reverses the direction.
 *
 * What the vault asked for (attached disks, replications, trusted senders) is
 * kept in `<dataDir>/data-path.json` and restored when the agent restarts, so
 * replication resumes on its own after a host crash.
 */
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { DiskService } from '../disk/index.ts';
import type { ActiveMirrorDriver } from '../hypervisor/active-mirror.ts';
import type { BlockBackend } from '../nbd/block-backend.ts';
import type { RetentionPolicy } from '../replica/index.ts';
import { ReplicaStore } from '../replica/index.ts';
import { generateHostIdentity, type HostIdentity, Receiver } from '../replication/index.ts';
import { writeFileAtomic } from '../storage/atomic-file.ts';
import { PRIVATE_DIR_MODE } from '../storage/private-files.ts';
import { checkGroupCanReach, type ShareGroup, shareSocket } from '../storage/share-group.ts';
import { orFreePort } from './free-port-fallback.ts';
import { hostDiskService } from './host-disk-service.ts';
import type { HostServices, ServerEndpoint, ServerEnrolment } from './host-services.ts';
import { HostStateFile } from './host-state-file.ts';
import { MirrorService, type MirrorServiceOptions } from './mirror-service.ts';
import { ReplicaService } from './replica-service.ts';
import { ReplicationService } from './replication-service.ts';
import { restoreSavedDisks, savedDiskService } from './saved-disk-service.ts';
import { type ServerAgentEndpoint, startServerAgentEndpoint } from './server-agent-endpoint.ts';
import { openServerCa, type ServerCa } from './server-ca.ts';
import { ServerLinks } from './server-links.ts';
import { checkSourceOnHost, defaultStorageFolders } from './storage-folders.ts';
import { filesystemCheckDirOf, sweepFilesystemChecks } from './view-filesystem-check.ts';
import { type AccessListen, ViewRegistry } from './view-registry.ts';

export interface DataPathOptions {
  dataDir: string;
  /** Where the replication receiver listens (SPEC §6, default port 9443); port 0 picks a free one. */
  replicationListen?: { host: string; port: number };
  /** Address peers use to reach the receiver, when it differs from the listen address. */
  replicationAdvertise?: string;
  /**
   * Where views opened for access (`haven view`, `haven export`) are served
   * over TCP with TLS-PSK; default the replication listen host, port 10809
   * (NBD's; a free one when that is taken), or a free port when replication's
   * is 0; null: not served.
   */
  viewAccessListen?: { host: string; port: number } | null;
  retention?: Partial<RetentionPolicy>;
  journalCapacityBytes?: number;
  /** Sender tuning (tests use short polls). */
  senderPollMs?: number;
  /** Replication bandwidth limit for everything this host sends, bytes per second. */
  bandwidthBytesPerSec?: number;
  /**
   * A hypervisor running as another user opens the disk and view sockets
   * through this group; `root` is the outermost folder Haven owns on the way.
   */
  share?: { group: ShareGroup; root: string };
  /** Folders disk images may be attached from (default `<dataDir>/images`); see storage-folders.ts. */
  storageFolders?: string[];
  /** The hypervisor's active mirror (libvirt): live protection of domains the disk service does not serve. */
  mirrorDriver?: ActiveMirrorDriver | null;
  /** Mirror service tuning (tests). */
  mirror?: Pick<MirrorServiceOptions, 'tickMs' | 'pointIntervalMs' | 'reconnectDelaySeconds' | 'log'>;
  /** Serve physical servers: their md legs over NBD and their agents over HTTPS (see ServerLinks). */
  servers?: ServerListenOptions;
  /** One line per thing done on its own (e.g. a sweep at start); defaults to stderr. */
  log?: (line: string) => void;
}

export interface ServerListenOptions {
  listen: { host: string; nbdPort: number; agentPort: number };
  /** A port taken by another process: take a free one instead of failing (`haven up`'s defaults). */
  freePortWhenTaken?: boolean;
  /** What servers are told to connect to when NAT or a proxy sits between (default: the listen address and bound ports). */
  advertise?: { address: string; nbdPort?: number; agentPort?: number };
  /** The name in the endpoint's certificate servers check (default this machine's hostname). */
  tlsHostname?: string;
  reportIntervalSeconds?: number;
  /** Host → vault `servers.redeemEnrolment` over the control channel. */
  redeemEnrolment(token: string): Promise<ServerEnrolment>;
}

export interface DataPath {
  services: Pick<HostServices, 'disk' | 'replication' | 'replica' | 'mirror'> &
    Partial<Pick<HostServices, 'servers'>>;
  /** Where servers reach this host; null without `servers`. */
  serverEndpoint: ServerEndpoint | null;
  /** Where the servers' NBD legs and agents are listened for (the advertised ports may differ); null without `servers`. */
  serverListen: { host: string; nbdPort: number; agentPort: number } | null;
  capabilities: string[];
  replicationAddress: string;
  replicationFingerprint: string;
  /** Absolute; reported in the host's inventory. */
  storageFolders: string[];
  diskService: DiskService;
  replicaStore: ReplicaStore;
  /** An open view's disk as a block device (tests; the hypervisor uses the NBD URI). */
  viewBackend(viewId: string, diskId: string): BlockBackend;
  close(): Promise<void>;
}

function viewAccessOf(options: DataPathOptions): AccessListen | undefined {
  if (options.viewAccessListen === null) return undefined;
  const host = options.viewAccessListen?.host ?? options.replicationListen?.host ?? '127.0.0.1';
  const port = options.viewAccessListen?.port ?? (options.replicationListen?.port === 0 ? 0 : 10809);
  const advertised = options.replicationAdvertise?.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  return {
    host,
    port,
    portIsDefault: options.viewAccessListen === undefined,
    ...(advertised ? { advertiseHost: advertised } : {}),
  };
}

export async function startDataPath(options: DataPathOptions): Promise<DataPath> {
  const { dataDir } = options;
  const log = options.log ?? ((line: string) => console.error(line));
  const storageFolders = (options.storageFolders ?? defaultStorageFolders(dataDir)).map((f) => resolve(f));
  const run = join(dataDir, 'run');
  await mkdir(run, { recursive: true, mode: PRIVATE_DIR_MODE });
  const state = await HostStateFile.load(join(dataDir, 'data-path.json'));

  // Running machines' QEMUs reconnect to this socket (within NBD_RECONNECT_DELAY_SECONDS):
  // it is served again, on the same path, with the journals recovered, before anything slow.
  const serverCa = options.servers
    ? await openServerCa(join(dataDir, 'server-ca'), caNamesOf(options.servers))
    : null;
  // Bound once the links are open: until then (restoring the saved legs) no server's leg is opened.
  let serverLinks: ServerLinks | null = null;
  const startDisks = (serversPort: number | null) =>
    DiskService.start({
      socket: join(run, 'disks.sock'),
      ...(options.journalCapacityBytes ? { journalCapacityBytes: options.journalCapacityBytes } : {}),
      ...(serverCa === null || serversPort === null || !options.servers
        ? {}
        : {
            servers: {
              listen: { host: options.servers.listen.host, port: serversPort },
              tls: { key: serverCa.keyPem, cert: serverCa.certPem, ca: serverCa.caCertPem },
              certificateRefused: (machineId: string) =>
                serverLinks === null
                  ? 'the host is starting'
                  : (serverLinks.refusalOf(machineId)?.message ?? null),
            },
          }),
    });
  const nbdPort = options.servers?.listen.nbdPort ?? null;
  const diskService =
    nbdPort === null
      ? await startDisks(null)
      : await orFreePort(startDisks, nbdPort, {
          allowed: options.servers?.freePortWhenTaken === true,
          taken: () => log(`NBD port ${nbdPort} for servers is taken: servers get a free one`),
        });
  const disk = hostDiskService(diskService, {
    dataDir,
    ...(options.journalCapacityBytes ? { journalCapacityBytes: options.journalCapacityBytes } : {}),
  });
  const notAttached = await restoreSavedDisks(disk, state.disks);
  for (const [name, why] of notAttached) console.error(`haven: disk export '${name}' is not served: ${why}`);
  const disks = savedDiskService(disk, state, dataDir);
  // Before anything else listens: a taken port fails the start with only the disk service to close.
  const servers =
    serverCa === null || !options.servers
      ? null
      : await startServers(options.servers, { ca: serverCa, core: diskService, disks, dataDir, log }).catch(
          async (error: unknown) => {
            await diskService.close();
            throw error;
          },
        );
  serverLinks = servers?.links ?? null;

  const identity = await loadIdentity(join(dataDir, 'replication-identity.json'));
  const replicaStore = await ReplicaStore.open(join(dataDir, 'replica'), {
    ...(options.retention ? { retention: options.retention } : {}),
    retentionIntervalMs: 60_000,
  });
  const receiver = new Receiver({
    identity,
    sink: replicaStore,
    allowedSenders: [...state.trustedSenders],
    host: options.replicationListen?.host ?? '127.0.0.1',
    port: options.replicationListen?.port ?? 9443,
  });
  const bound = await listenReceiver(receiver, options.replicationListen?.port ?? 9443, state);
  const views = await ViewRegistry.listen(replicaStore, join(run, 'views.sock'), viewAccessOf(options));
  if (options.share) {
    for (const socket of ['disks.sock', 'views.sock']) {
      await shareSocket(join(run, socket), options.share.root, options.share.group);
      await checkGroupCanReach(join(run, socket), options.share.group);
    }
  }
  // Built before the replication service it reads hashes from, so resolved late.
  let replicationRef: ReplicationService | null = null;
  const mirror = new MirrorService({
    driver: options.mirrorDriver ?? null,
    core: diskService,
    disks: disk,
    socket: join(run, 'disks.sock'),
    state,
    shareGroup: options.share?.group ?? null,
    compare: {
      begin: async (exportName, diskKey, blockBytes) => {
        if (!replicationRef) throw new Error('replication service not started');
        const hashes = await replicationRef.replicaHashes(diskKey, { blockBytes });
        diskService.beginSinkCompare(exportName, hashes);
      },
      end: async (exportName) => diskService.endSinkCompare(exportName),
    },
    ...options.mirror,
  });
  const replication = new ReplicationService({
    dataDir,
    identity,
    ...(options.senderPollMs ? { pollMs: options.senderPollMs } : {}),
    ...(options.bandwidthBytesPerSec ? { bandwidthBytesPerSec: options.bandwidthBytesPerSec } : {}),
    diskService,
    views,
    receiver,
    state,
    notAttached,
    mirrorStatus: async (machineId) => (mirror.mirrors(machineId) ? mirror.status({ machineId }) : null),
    serverStatus: async (machineId) =>
      serverLinks?.serves(machineId) ? serverLinks.status({ machineId }) : null,
  });
  replicationRef = replication;
  const replica = new ReplicaService({
    dataDir,
    replicaStore,
    views,
    replication,
    diskService,
    disks,
    state,
  });

  // Bring back the rest of what the vault had set up: replication reads the disks and views.
  await sweepFilesystemChecks(filesystemCheckDirOf(dataDir));
  await replica.reopenViews();
  const swept = await replica.sweepAccessOverlays();
  if (swept.length > 0) {
    log(
      `removed the overlays of writable views opened for access that were open when the agent stopped (never reopened): ${swept.join(', ')}`,
    );
  }
  await replication.resume();

  // What the vault asks to attach (first attach, or again after a retry) must come from a storage
  // folder, or from the folder where this host recreates machines itself (failback to another host).
  const attachable = [...storageFolders, resolve(dataDir, 'machines')];
  const checkedDisks: typeof disks = {
    ...disks,
    attach: async (params) => {
      // A sink never opens its source (the domain's own image, named by its definition): QEMU mirrors it;
      // a server's leg names the server's own device, staged here under the data directory.
      if (params.sink !== true && params.serverLeg !== true)
        await checkSourceOnHost('source', params.source, attachable);
      return disks.attach(params);
    },
    writers: async (params) => {
      // Only looked at, never opened for writing: an imported domain's image may live anywhere
      // (its definition names it), but only a regular file or block device is probed.
      const inFolder = await checkSourceOnHost('source', params.source, attachable).then(
        () => true,
        (error: unknown) => error,
      );
      if (inFolder !== true) {
        const found = await stat(params.source).catch(() => null);
        if (!found?.isFile() && !found?.isBlockDevice()) throw inFolder;
      }
      return disks.writers(params);
    },
  };

  return {
    services: {
      disk: checkedDisks,
      replication,
      replica,
      mirror,
      ...(servers ? { servers: servers.links } : {}),
    },
    serverEndpoint: servers?.endpoint ?? null,
    serverListen: servers
      ? {
          host: servers.agentEndpoint.address.host,
          nbdPort: diskService.addresses.servers!.port,
          agentPort: servers.agentEndpoint.address.port,
        }
      : null,
    capabilities: ['disk-service', 'replication', 'replica-store', ...(servers ? ['server-link'] : [])],
    replicationAddress: options.replicationAdvertise ?? `${bound.host}:${bound.port}`,
    replicationFingerprint: identity.fingerprint,
    storageFolders,
    diskService,
    replicaStore,
    viewBackend: (viewId, diskId) => views.backend(viewId, diskId),
    close: async () => {
      await servers?.agentEndpoint.close();
      await mirror.close();
      await replication.close();
      await receiver.close();
      await views.closeAll();
      await diskService.close();
      await replicaStore.close();
    },
  };
}

function caNamesOf(servers: ServerListenOptions): { tlsHostname: string; address: string } {
  const address = servers.advertise?.address ?? servers.listen.host;
  const name = hostname();
  return {
    tlsHostname: servers.tlsHostname ?? (/^[A-Za-z0-9.-]{1,253}$/.test(name) ? name : address),
    address,
  };
}

/** The servers' agent endpoint and their links, once the legs' NBD listener is up. */
async function startServers(
  options: ServerListenOptions,
  parts: {
    ca: ServerCa;
    core: DiskService;
    disks: HostServices['disk'];
    dataDir: string;
    log: (line: string) => void;
  },
): Promise<{ links: ServerLinks; endpoint: ServerEndpoint; agentEndpoint: ServerAgentEndpoint }> {
  const nbd = parts.core.addresses.servers;
  if (nbd === undefined) throw new Error('the disk service has no listener for servers');
  // The links answer the endpoint's requests; the endpoint's bound port goes into what the links tell servers.
  let links: ServerLinks | null = null;
  const handler = {
    enrol: (token: string, csr: string) => (links as ServerLinks).enrol(token, csr),
    report: (machineId: string, body: string) => (links as ServerLinks).report(machineId, body),
  };
  const listenAgent = (port: number) =>
    startServerAgentEndpoint({
      ca: parts.ca,
      links: handler,
      listen: { host: options.listen.host, port },
      log: parts.log,
    });
  const agentEndpoint = await orFreePort(listenAgent, options.listen.agentPort, {
    allowed: options.freePortWhenTaken === true,
    taken: () =>
      parts.log(`agent port ${options.listen.agentPort} for servers is taken: servers get a free one`),
  });
  const endpoint: ServerEndpoint = {
    address: options.advertise?.address ?? options.listen.host,
    nbdPort: options.advertise?.nbdPort ?? nbd.port,
    agentPort: options.advertise?.agentPort ?? agentEndpoint.address.port,
    tlsHostname: parts.ca.tlsHostname,
    caCertPem: parts.ca.caCertPem,
  };
  try {
    links = await ServerLinks.open({
      dataDir: parts.dataDir,
      endpoint,
      ca: parts.ca,
      core: parts.core,
      disks: parts.disks,
      redeemEnrolment: options.redeemEnrolment,
      ...(options.reportIntervalSeconds === undefined
        ? {}
        : { reportIntervalSeconds: options.reportIntervalSeconds }),
      log: parts.log,
    });
  } catch (error) {
    await agentEndpoint.close();
    throw error;
  }
  return { links, endpoint, agentEndpoint };
}

/** The host's replication certificate: made once, kept so peers' pins stay valid. */
async function loadIdentity(path: string): Promise<HostIdentity> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as HostIdentity;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const identity = await generateHostIdentity();
  await writeFileAtomic(path, JSON.stringify(identity));
  await chmod(path, 0o600);
  return identity;
}

/**
 * Port 0 asks for a free port. The first one bound is saved and asked for
 * again after a restart: senders keep the address this host had, so a new
 * port would leave them knocking at the old one. Only when another process
 * holds it does the receiver move (its senders then report the error, and
 * their machines are not shown healthy).
 */
async function listenReceiver(
  receiver: Receiver,
  port: number,
  state: HostStateFile,
): Promise<{ host: string; port: number }> {
  if (port !== 0) return receiver.listen(port);
  const saved = state.receiverPort;
  const bound =
    saved === null
      ? await receiver.listen(0)
      : await receiver.listen(saved).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== 'EADDRINUSE') throw error;
          return receiver.listen(0);
        });
  if (bound.port !== saved) await state.setReceiverPort(bound.port);
  return bound;
}
