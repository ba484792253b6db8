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
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../disk/atomic-file.ts';
import { DiskService, hostDiskService, type JournaledBackend } from '../disk/index.ts';
import type { RecoveryPoint } from '../domain/model.ts';
import { HavenError } from '../errors/index.ts';
import type { BlockBackend } from '../nbd/block-backend.ts';
import { NbdServer, removeStaleSocket } from '../nbd/index.ts';
import type { RecoveryPointInfo, RetentionPolicy } from '../replica/index.ts';
import { ReplicaStore } from '../replica/index.ts';
import {
  type DiskReplicationStatus,
  generateHostIdentity,
  type HostIdentity,
  Receiver,
  Sender,
} from '../replication/index.ts';
import type {
  DiskRef,
  PointView as HostPointView,
  HostServices,
  ReplicationStatus,
  ReplicationTarget,
} from './host-services.ts';

export interface DataPathOptions {
  dataDir: string;
  /** Where the replication receiver listens (SPEC §6, default port 9443); port 0 picks a free one. */
  replicationListen?: { host: string; port: number };
  /** Address peers use to reach the receiver, when it differs from the listen address. */
  replicationAdvertise?: string;
  retention?: Partial<RetentionPolicy>;
  journalCapacityBytes?: number;
  /** Sender tuning (tests use short polls). */
  senderPollMs?: number;
}

export interface DataPath {
  services: Pick<HostServices, 'disk' | 'replication' | 'replica'>;
  capabilities: string[];
  replicationAddress: string;
  replicationFingerprint: string;
  diskService: DiskService;
  replicaStore: ReplicaStore;
  close(): Promise<void>;
}

interface PersistedState {
  disks: Array<DiskRef & { source: string; sizeBytes: number }>;
  replications: Array<{ machineId: string; diskIds: string[]; target: ReplicationTarget }>;
  trustedSenders: string[];
}

interface OpenView {
  machineId: string;
  writable: boolean;
  disks: Array<{
    diskId: string;
    diskKey: string;
    exportName: string;
    view: BlockBackend & { close(): Promise<void> };
  }>;
}

export const diskKeyOf = (machineId: string, diskId: string): string => `${machineId}/${diskId}`;
const exportNameOf = (machineId: string, diskId: string): string => `${machineId}.${diskId}`;

export async function startDataPath(options: DataPathOptions): Promise<DataPath> {
  const { dataDir } = options;
  const run = join(dataDir, 'run');
  await mkdir(run, { recursive: true });
  const statePath = join(dataDir, 'data-path.json');
  const state = await loadState(statePath);
  const save = () => writeFileAtomic(statePath, `${JSON.stringify(state, null, 2)}\n`);
  const identity = await loadIdentity(join(dataDir, 'replication-identity.json'));

  const diskService = await DiskService.start({
    socket: join(run, 'disks.sock'),
    ...(options.journalCapacityBytes ? { journalCapacityBytes: options.journalCapacityBytes } : {}),
  });
  const disk = hostDiskService(diskService, {
    dataDir,
    ...(options.journalCapacityBytes ? { journalCapacityBytes: options.journalCapacityBytes } : {}),
  });
  const replicaStore = await ReplicaStore.open(join(dataDir, 'replica'), {
    ...(options.retention ? { retention: options.retention } : {}),
    retentionIntervalMs: 60_000,
  });
  const receiver = new Receiver({
    identity,
    sink: replicaStore,
    allowedSenders: state.trustedSenders,
    host: options.replicationListen?.host ?? '127.0.0.1',
    port: options.replicationListen?.port ?? 9443,
  });
  const bound = await receiver.listen();
  const replicationAddress = options.replicationAdvertise ?? `${bound.host}:${bound.port}`;
  const sender = new Sender({ identity, ...(options.senderPollMs ? { pollMs: options.senderPollMs } : {}) });
  const viewSocket = join(run, 'views.sock');
  const viewServer = new NbdServer();
  await removeStaleSocket(viewSocket);
  await viewServer.listen({ path: viewSocket });
  const views = new Map<string, OpenView>();

  const diskKeysOf = (machineId: string) =>
    replicaStore
      .listDisks()
      .map((d) => d.diskKey)
      .filter((k) => k.startsWith(`${machineId}/`));

  const startSending = (machineId: string, diskIds: string[], target: ReplicationTarget) => {
    const [host, port] = splitAddress(target.address);
    for (const diskId of diskIds) {
      const diskKey = diskKeyOf(machineId, diskId);
      if (sender.statuses().some((s) => s.diskKey === diskKey)) continue;
      sender.addDisk({
        diskKey,
        source: diskService.backend(exportNameOf(machineId, diskId)) as JournaledBackend,
        receiver: { host, port, fingerprint: target.fingerprint },
        statePath: join(dataDir, 'replication', machineId, `${diskId}.json`),
      });
    }
  };

  // Bring back what the vault had set up before this agent stopped.
  for (const d of state.disks) await disk.attach(d);
  for (const r of state.replications) {
    await mkdir(join(dataDir, 'replication', r.machineId), { recursive: true });
    startSending(r.machineId, r.diskIds, r.target);
  }

  const services: DataPath['services'] = {
    disk: {
      ...disk,
      attach: async (params) => {
        const result = await disk.attach(params);
        if (!state.disks.some((d) => d.machineId === params.machineId && d.diskId === params.diskId)) {
          state.disks.push({ ...params });
          await save();
        }
        return result;
      },
      detach: async (params) => {
        await disk.detach(params);
        state.disks = state.disks.filter(
          (d) => !(d.machineId === params.machineId && d.diskId === params.diskId),
        );
        await save();
      },
    },
    replication: {
      start: async ({ machineId, diskIds, target }) => {
        await mkdir(join(dataDir, 'replication', machineId), { recursive: true });
        startSending(machineId, diskIds, target);
        state.replications = [
          ...state.replications.filter((r) => r.machineId !== machineId),
          { machineId, diskIds, target },
        ];
        await save();
        return aggregate(machineId, sender.statuses(), diskService);
      },
      stop: async ({ machineId }) => {
        for (const s of sender.statuses().filter((x) => x.diskKey.startsWith(`${machineId}/`))) {
          await sender.removeDisk(s.diskKey);
        }
        state.replications = state.replications.filter((r) => r.machineId !== machineId);
        await save();
      },
      status: async ({ machineId }) => aggregate(machineId, sender.statuses(), diskService),
      allowSender: async ({ fingerprint }) => {
        receiver.allowSender(fingerprint);
        if (!state.trustedSenders.includes(fingerprint)) {
          state.trustedSenders.push(fingerprint);
          await save();
        }
      },
    },
    replica: {
      listPoints: async ({ machineId }) => machinePoints(machineId, diskKeysOf(machineId), replicaStore),
      openView: async ({ machineId, pointId, writable }) => {
        const keys = diskKeysOf(machineId);
        if (keys.length === 0)
          throw new HavenError('not_found', `no replica of machine '${machineId}' on this host`);
        const point = machinePoints(machineId, keys, replicaStore).find((p) => p.id === pointId);
        if (!point) {
          throw new HavenError(
            'not_found',
            `recovery point '${pointId}' of machine '${machineId}' does not exist`,
            {
              pointId,
            },
          );
        }
        const viewId = `${machineId.slice(0, 8)}-${Date.now().toString(36)}`;
        const opened: OpenView = { machineId, writable, disks: [] };
        try {
          for (const diskKey of keys) {
            const diskId = diskKey.slice(machineId.length + 1);
            const seq = seqOfPoint(replicaStore, diskKey, point);
            const view = await replicaStore.openView(diskKey, seq, { writable, viewId });
            const exportName = `${viewId}.${diskId}`;
            viewServer.addExport(exportName, { backend: view, description: `${diskKey} at ${point.time}` });
            opened.disks.push({ diskId, diskKey, exportName, view });
          }
        } catch (error) {
          await closeOpened(opened, true);
          throw error;
        }
        views.set(viewId, opened);
        return viewInfo(viewId, pointId, opened, viewSocket);
      },
      closeView: async ({ viewId, discardWrites }) => {
        const opened = views.get(viewId);
        if (!opened) return;
        views.delete(viewId);
        await closeOpened(opened, discardWrites);
      },
      commitPoint: async ({ machineId, pointId }) => {
        const keys = diskKeysOf(machineId);
        const point = machinePoints(machineId, keys, replicaStore).find((p) => p.id === pointId);
        if (!point)
          throw new HavenError('not_found', `recovery point '${pointId}' does not exist`, { pointId });
        for (const diskKey of keys)
          await replicaStore.commit(diskKey, `${diskKey}@${seqOfPoint(replicaStore, diskKey, point)}`);
      },
      deletePoints: async ({ machineId, before }) => {
        if (before !== undefined) {
          throw new HavenError(
            'not_available',
            'deleting points by age is done by the retention policy, not on request',
          );
        }
        const keys = diskKeysOf(machineId);
        for (const diskKey of keys) await replicaStore.removeDisk(diskKey);
        return { deleted: keys.length };
      },
    },
  };

  async function closeOpened(opened: OpenView, discard: boolean): Promise<void> {
    for (const d of opened.disks) {
      await viewServer.removeExport(d.exportName);
      await d.view.close();
      if (discard && opened.writable) {
        const viewId = d.exportName.slice(0, d.exportName.lastIndexOf('.'));
        await replicaStore.discardView(d.diskKey, viewId);
      }
    }
  }

  return {
    services,
    capabilities: ['disk-service', 'replication', 'replica-store'],
    replicationAddress,
    replicationFingerprint: identity.fingerprint,
    diskService,
    replicaStore,
    close: async () => {
      await sender.close();
      await receiver.close();
      for (const opened of views.values()) await closeOpened(opened, false).catch(() => {});
      await viewServer.close();
      await diskService.close();
      await replicaStore.close();
    },
  };
}

function viewInfo(viewId: string, pointId: string, opened: OpenView, socket: string): HostPointView {
  return {
    viewId,
    machineId: opened.machineId,
    pointId,
    writable: opened.writable,
    disks: opened.disks.map((d) => ({
      diskId: d.diskId,
      nbdUri: `nbd+unix:///${d.exportName}?socket=${socket}`,
      sizeBytes: d.view.size,
    })),
  };
}

/**
 * A machine's recovery points. A one-disk machine's points are its disk's
 * points. For several disks only the markers every disk holds (the disk
 * service inserts them on all disks at one instant) make a consistent point.
 */
export function machinePoints(machineId: string, diskKeys: string[], store: ReplicaStore): RecoveryPoint[] {
  if (diskKeys.length === 0) return [];
  const perDisk = diskKeys.map((k) => store.listPoints(k));
  const toPoint = (p: RecoveryPointInfo, id: string): RecoveryPoint => ({
    id,
    machineId,
    time: p.time,
    type: p.type === 'app-consistent' ? 'app-consistent' : 'crash-consistent',
    groupPointId: p.groupPointId,
    // The replica store serves every durable record at once: nothing waits to be processed.
    processed: true,
    sizeBytes: p.sizeBytes,
  });
  if (diskKeys.length === 1) return perDisk[0]!.map((p) => toPoint(p, p.id));
  const markerId = (p: RecoveryPointInfo) => p.groupPointId ?? p.label;
  const common = perDisk[0]!.filter(
    (p) => markerId(p) !== null && perDisk.every((list) => list.some((q) => markerId(q) === markerId(p))),
  );
  return common.map((p) => toPoint(p, `${machineId}@${markerId(p)}`));
}

function seqOfPoint(store: ReplicaStore, diskKey: string, point: RecoveryPoint): number {
  if (point.id.startsWith(`${diskKey}@`)) return Number(point.id.slice(diskKey.length + 1));
  const marker = point.id.slice(point.id.indexOf('@') + 1);
  const match = store.listPoints(diskKey).find((p) => (p.groupPointId ?? p.label) === marker);
  if (!match) throw new HavenError('not_found', `disk '${diskKey}' has no point for marker '${marker}'`);
  return match.seq;
}

/** One machine's replication, from its disks': the worst state, the oldest pending write. */
function aggregate(
  machineId: string,
  all: DiskReplicationStatus[],
  diskService: DiskService,
): ReplicationStatus {
  const mine = all.filter((s) => s.diskKey.startsWith(`${machineId}/`));
  if (mine.length === 0) {
    return {
      machineId,
      state: 'stopped',
      progress: 0,
      lagSeconds: null,
      queuedBytes: 0,
      sentBytes: 0,
      lastError: null,
    };
  }
  const rank = ['error', 'connecting', 'initial-sync', 'resync', 'paused', 'streaming'] as const;
  const worst = mine.map((s) => s.state).sort((a, b) => rank.indexOf(a) - rank.indexOf(b))[0]!;
  const syncing = mine.filter((s) => s.syncProgress !== null);
  const progress =
    syncing.length === 0
      ? 100
      : Math.floor(syncing.reduce((sum, s) => sum + (s.syncProgress ?? 0), 0) / syncing.length);
  let lag: number | null = 0;
  for (const s of mine) {
    if (s.bytesPending === 0) continue;
    const name = exportNameOf(machineId, s.diskKey.slice(machineId.length + 1));
    const lastWrite = Date.parse(diskService.journalStatus(name).lastWriteAt ?? '') || Date.now();
    const since = s.lastAckedRecordTimeMs ?? lastWrite;
    lag = Math.max(lag ?? 0, (Date.now() - Math.min(since, lastWrite)) / 1000);
  }
  return {
    machineId,
    state: worst === 'connecting' ? (syncing.length > 0 ? 'initial-sync' : 'streaming') : worst,
    progress,
    lagSeconds: lag,
    queuedBytes: mine.reduce((sum, s) => sum + s.bytesPending, 0),
    sentBytes: mine.reduce((sum, s) => sum + s.wireBytesSent, 0),
    lastError: mine.find((s) => s.lastError)?.lastError ?? null,
  };
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

async function loadState(path: string): Promise<PersistedState> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as PersistedState;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      return { disks: [], replications: [], trustedSenders: [] };
    throw error;
  }
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
