/**
 * The host operations the orchestration needs, one small interface per seam.
 * The host agent serves them over the control channel as RPC methods named
 * "<service>.<operation>" (e.g. "disk.attach"); the vault gets the same
 * interfaces back through remoteHostServices. Every operation takes one
 * JSON-serialisable params object and resolves to JSON-serialisable data.
 *
 * A host agent started without one of the services (no hypervisor, a test
 * host) refuses its operations with `not_available` (notAvailableServices).
 */
import type {
  MirroredDiskState,
  MirrorSnapshot,
  RecoveryPoint,
  RecoveryPointType,
  ServerBmc,
  ServerLinkSnapshot,
} from '../domain/index.ts';
import type { FilesystemCheck, VmBootCheck } from '../filesystem/index.ts';
import type { Hypervisor } from '../hypervisor/hypervisor.ts';
import type { ImageWriters } from './image-writers.ts';

export type {
  FilesystemCheck,
  FilesystemCheckResult,
  FilesystemLocation,
  FilesystemType,
  PartitionTableType,
} from '../filesystem/index.ts';
/** The hypervisor's types travel with the host's services, which serve them over RPC. */
export type * from '../hypervisor/hypervisor.ts';

// ---- host ----------------------------------------------------------------

export interface HostInfo {
  hostname: string;
  version: string;
  capabilities: string[];
  replicationAddress: string | null;
  /** Folders disk images may be attached from (`haven host --storage DIR`). */
  storageFolders: string[];
  platform: string;
  dataDir: string;
  /** Free and total bytes of the file system holding the data directory. */
  dataDirFreeBytes: number;
  dataDirTotalBytes: number;
  uptimeSeconds: number;
  /** Where physical servers reach this host (`haven host --server-listen`); null when it serves none. */
  serverEndpoint: ServerEndpoint | null;
}

export interface HostInfoService {
  info(params?: Record<string, never>): Promise<HostInfo>;
  ping(params?: Record<string, never>): Promise<{ time: string }>;
}

// ---- disk service (write journal on the protected side) -------------------

export interface DiskRef {
  machineId: string;
  diskId: string;
}

export interface DiskExport extends DiskRef {
  /** NBD export the hypervisor attaches to, e.g. "nbd+unix:///vm1-disk0?socket=/run/haven/nbd.sock". */
  nbdUri: string;
  sizeBytes: number;
  /** The disk image; for a sink, the machine's own disk that QEMU mirrors into it; for a server's leg, its device. */
  source: string;
  /** A physical server's leg: the staging image this host keeps for it (what reprotect adopts). */
  stagingImage?: string;
  /** A journal-only sink (mirror target): whether its mirror was declared ready. */
  sink?: { ready: boolean };
  /** Journal bytes not yet acknowledged by the replica store. */
  pendingBytes: number;
}

export interface JournalStatus {
  machineId: string;
  disks: Array<
    DiskRef & { pendingBytes: number; oldestPendingAt: string | null; lastWriteAt: string | null }
  >;
}

/** A byte range of a disk. */
export interface DiskRegion {
  offset: number;
  length: number;
}

export interface DiskService {
  list(params?: { machineId?: string }): Promise<DiskExport[]>;
  /**
   * Wraps the disk image in the journaling backend and exports it over NBD
   * (already attached with the same image: returns the export).
   * `resetJournal`: start a fresh journal (from sequence 1), forgetting the old
   * one: after failback's complete failover, when the replica at the recovery
   * site is made to follow the new journal (`replica.consolidateView`).
   * `sink`: export a journal-only sink of `sizeBytes` as the target of QEMU's
   * active mirror of the machine's own disk `source` (which Haven does not
   * open): writes are journaled, no copy of the disk is kept.
   * `serverLeg`: a physical server's md leg for its device `source`: a
   * staging image `<dataDir>/servers/<machineId>/<diskId>.img` (sparse, made
   * at `sizeBytes` when absent) served on the servers' NBD listener to that
   * machine's certificate only; its flushes are points only while md holds
   * the leg in sync.
   */
  attach(
    params: DiskRef & {
      source: string;
      sizeBytes: number;
      resetJournal?: boolean;
      sink?: boolean;
      /** A physical server's NBD leg: a staging image the host keeps, served to the server's certificate. */
      serverLeg?: boolean;
    },
  ): Promise<DiskExport>;
  detach(params: DiskRef): Promise<void>;
  /**
   * Processes besides the disk service that write the disk's image (open for
   * writing, or holding QEMU's write lock): attach refuses such a disk, and
   * the vault refuses to replicate it. None when the image does not exist.
   */
  writers(params: DiskRef & { source: string }): Promise<ImageWriters>;
  /** Inserts a recovery-point marker in the journals of all disks of the machines, at one instant. */
  insertMarker(params: {
    machineIds: string[];
    type: RecoveryPointType;
    groupPointId: string | null;
  }): Promise<{ markerId: string; time: string }>;
  journalStatus(params: { machineId: string }): Promise<JournalStatus>;
  /**
   * First phase of a cut across hosts (consistency groups): holds new writes
   * to every disk of the machines (the running ones finish) and answers once
   * they are held. The host lets them go by itself after `timeoutMs`
   * (at most MAX_WRITE_HOLD_MS) whatever the vault does, so a lost vault or a
   * stuck peer host never freezes the machines for longer.
   */
  holdWrites(params: { machineIds: string[]; timeoutMs: number }): Promise<WriteHold>;
  /** Second phase: the marker, on every disk of the hold, while it holds; refused once the hold has expired. */
  insertMarkerHeld(params: {
    holdId: string;
    type: RecoveryPointType;
    groupPointId: string;
  }): Promise<{ markerId: string; time: string }>;
  /** Last phase (also after any failure): lets the held writes go. Harmless for an unknown or expired hold. */
  releaseWrites(params: { holdId: string }): Promise<{ heldMs: number | null }>;
}

/** Longest a host holds writes for a cut, whatever `timeoutMs` asks. */
export const MAX_WRITE_HOLD_MS = 5000;

export interface WriteHold {
  holdId: string;
  /** When writes were held, and when the host lets them go on its own. */
  heldAt: string;
  expiresAt: string;
}

// ---- replication (sender) ------------------------------------------------

export interface ReplicationTarget {
  hostId: string;
  /** The recovery host's replication address ("host:port"), SPEC §6. */
  address: string;
  /** The recovery host's replication certificate fingerprint: the sender pins it. */
  fingerprint: string;
}

export type ReplicationState = 'initial-sync' | 'resync' | 'streaming' | 'paused' | 'stopped' | 'error';

/**
 * A disk of the machine that this host was asked to serve to its hypervisor
 * and does not: its export is gone (e.g. its image could not be opened after
 * a restart) or its write journal accepts no more writes. The guest's I/O to
 * it fails or waits: the machine is not healthy, whatever replication says.
 */
export interface BrokenDiskPath {
  diskId: string;
  problem: string;
}

export interface ReplicationStatus {
  machineId: string;
  /** The machine's disks this host does not serve as it should; empty when every one is served. */
  brokenDisks: BrokenDiskPath[];
  state: ReplicationState;
  /** 0..100 during initial sync or resync (by bytes, each disk weighted by its size). */
  progress: number;
  /** While a sync runs: bytes worked through (compared and copied) of the bytes it has to. */
  copy?: { doneBytes: number; totalBytes: number } | null;
  /** Age of the oldest write not yet at the target. */
  lagSeconds: number | null;
  /** Journal bytes not yet acknowledged, plus regions still to be copied by a resync. */
  queuedBytes: number;
  /** Bytes put on the wire since replication (re)started on this host. */
  sentBytes: number;
  lastError: string | null;
  /** The latest sync of each disk (initial copy, diverged regions, hash compare), when there was one. */
  syncs?: Array<{
    diskId: string;
    kind: 'initial' | 'bitmap' | 'full' | 'hash';
    diskBytes: number;
    /** Bytes the copy covered (the whole disk, the diverged regions, or the differing blocks). */
    regionBytes: number;
    /** Bytes of the regions copied so far. */
    copiedBytes: number;
    /** Hash compare: bytes of the disk compared so far (null for other kinds). */
    comparedBytes: number | null;
    wireBytes: number;
    blocksCompared: number | null;
    blocksDiffering: number | null;
    completed: boolean;
  }>;
  /** Per disk: the resync requests its sender answered so far (see `Replication.resync`). */
  resyncRequests?: Array<{ diskId: string; senderId: string; done: number }>;
  /** A machine protected through QEMU's active mirror: whether its writes reach the sinks now. */
  mirror?: MirrorStatus | null;
  /** A physical server: its NBD legs and its agent's last report. */
  server?: ServerLinkSnapshot | null;
}

/** How `replication.resync` resyncs a disk (what the vault's resync job shows). */
export type DiskResyncKind = 'bitmap' | 'hash' | 'full';

/** A resync asked of a machine's disks: it is done when each disk's sender answered its request. */
export interface ResyncRequested {
  machineId: string;
  disks: Array<{ diskId: string; kind: DiskResyncKind; senderId: string; request: number }>;
}

/**
 * Replicate from a writable view instead of the disk service (reprotect: the
 * recovery machine runs from the view). The view's journal knows what to send:
 * the regions that diverged from the target's image plus the view's own writes.
 */
export interface ReplicationViewSource {
  viewId: string;
  /**
   * Per disk id: regions the old primary wrote that never reached the replica
   * (`replica.adoptImage`'s `unsentRegions`); copied back like the others.
   */
  extraRegions?: Record<string, DiskRegion[]>;
}

export interface Replication {
  start(params: {
    machineId: string;
    diskIds: string[];
    target: ReplicationTarget;
    /**
     * From the disk service: full = initial copy unless the disks were copied
     * before (enable replication); delta = hash compare, only differing blocks;
     * continue = stream the journal (the target already holds everything before it).
     * From a view (`source`): delta = the diverged regions and the view's writes;
     * full = hash compare of whole disks, only differing blocks sent (full download).
     */
    mode: 'full' | 'delta' | 'continue';
    source?: ReplicationViewSource;
  }): Promise<ReplicationStatus>;
  stop(params: { machineId: string }): Promise<void>;
  /**
   * The vault's desired state, sent when the host (re)connects: the machines
   * this host may send. Every other replication it runs (one the vault gave
   * up on while the host was away) is stopped; returns the machines stopped.
   */
  reconcile(params: { machineIds: string[] }): Promise<{ stopped: string[] }>;
  status(params: { machineId: string }): Promise<ReplicationStatus>;
  /** Lets a peer host's sender deliver to this host's receiver (its certificate fingerprint, from the vault). */
  allowSender(params: { fingerprint: string }): Promise<void>;
  /**
   * Resyncs every replicated disk of the machine while it keeps running: the
   * regions of the dirty bitmap when the journal overflowed into it, else a
   * hash compare (only differing blocks sent); `full` copies whole disks.
   * Watch `status().resyncRequests` for the answer.
   */
  resync(params: { machineId: string; full: boolean }): Promise<ResyncRequested>;
}

// ---- replica store (recovery side) ----------------------------------------

export interface PointView {
  viewId: string;
  machineId: string;
  pointId: string;
  /** Writable views keep their writes apart from the replica (test failover, SPEC §7 instant failover). */
  writable: boolean;
  disks: Array<{
    diskId: string;
    nbdUri: string;
    sizeBytes: number;
    /** Writable views: what reprotect will send (see `ViewDiskStatus`). */
    status?: ViewDiskStatus;
    /** Views opened for access: the disk over TCP, TLS with the view's pre-shared key only. */
    accessUri?: string;
  }>;
  /** Views opened for access: when the host closes it. */
  expiresAt?: string;
}

/**
 * Opens a view to NBD clients over TCP until `expiresAt` (`haven view`): TLS
 * with this pre-shared key (`identity`, 32 bytes as hex) only. Such a view
 * outlives a lost vault connection (the vault reconciles it on reconnect) but
 * not the agent: its key is kept in memory only, its writes are dropped.
 */
export interface ViewAccessRequest {
  identity: string;
  keyHex: string;
  expiresAt: string;
}

export interface ViewDiskStatus {
  /** Bytes the primary wrote after the point that the replica held when the view was made. */
  divergedBytes: number;
  /** Bytes of regions still to copy on reprotect (diverged, extra, and journal overflow). */
  dirtyBytes: number;
  /** The view's write journal. */
  journal: { firstSeq: number; nextSeq: number; usedBytes: number; mode: 'journal' | 'bitmap' };
}

export interface AdoptedDisk extends DiskRef {
  /** The reverse replica resumes after this sequence (the view journal's first record − 1). */
  durableSeq: number;
  /**
   * Regions this host wrote that its journal had not delivered to the replica
   * (pass them to the recovery host's `replication.start` as `extraRegions`);
   * null when that is unknown (the journal is gone): reprotect with mode 'full'.
   */
  unsentRegions: DiskRegion[] | null;
  unsentBytes: number;
}

/** What `replica.consolidate` wrote back into each image. */
export interface Consolidated {
  machineId: string;
  disks: Array<{
    diskId: string;
    /**
     * Every byte range written into the image since `adoptImage` (the
     * reverse resync's copy and the records merged), merged; null when not
     * known (the image was not adopted, or an earlier call already
     * consolidated it): take the whole disk then.
     */
    writtenRegions: DiskRegion[] | null;
  }>;
}

/** What `replica.checkFilesystems` found on a view's disks. */
export interface FilesystemCheckReport {
  viewId: string;
  machineId: string;
  pointId: string;
  /** Every filesystem (or volume, or unknown area) of every disk, in disk and partition order. */
  filesystems: FilesystemCheck[];
  /** The time limit ended the check: what it had not finished is `not-checked`. */
  timedOut: boolean;
  durationMs: number;
  /** Asked with `vmBoot`: whether the first disk can boot as a VM (a physical server's replica), item by item. */
  vmBoot?: VmBootCheck | null;
}

/** What `replica.writeBackToImage` did (null point: the replica was already written back and removed). */
export interface ImageWriteBack {
  pointId: string | null;
  comparedBytes: number;
  writtenBytes: number;
}

export interface ReplicaStore {
  listPoints(params: { machineId: string }): Promise<RecoveryPoint[]>;
  /**
   * `viewId`: a name of the caller's (1-40 letters, digits, '_', '-'); opening
   * it again returns the same view (kept writable views are resumed).
   * `failover`: the machine fails over to this view: the replica refuses the
   * old primary's records from now on (commit does the same).
   */
  openView(params: {
    machineId: string;
    pointId: string;
    writable: boolean;
    viewId?: string;
    failover?: boolean;
    access?: ViewAccessRequest;
  }): Promise<PointView>;
  /** An open view, with each writable disk's reprotect status. */
  viewInfo(params: { viewId: string }): Promise<PointView>;
  closeView(params: { viewId: string; discardWrites: boolean }): Promise<void>;
  /**
   * Checks every filesystem of a writable view without booting it (a drill,
   * before its machine starts from the view: refused while another check of
   * it runs; no machine may run from it meanwhile). Journals needing
   * recovery are replayed into the view's overlay, then each filesystem is
   * checked read-only: ext2/3/4 with e2fsck, XFS with xfs_repair where
   * xfsprogs is installed. LVM, LUKS, swap and unknown contents are
   * `not-checked`, with the reason. Within `timeoutMs` (default 10 min):
   * what the limit stops is `not-checked`.
   */
  checkFilesystems(params: {
    viewId: string;
    timeoutMs?: number;
    vmBoot?: boolean;
  }): Promise<FilesystemCheckReport>;
  /** Keeps `pointId` as the machine's disks and deletes the other points (commit, SPEC §2.5). */
  commitPoint(params: { machineId: string; pointId: string }): Promise<void>;
  /** Deletes points older than `before` (retention), or all points when omitted. */
  deletePoints(params: { machineId: string; before?: string }): Promise<{ deleted: number }>;
  /**
   * Reprotect to the original machine (it is off), on the primary host: the
   * disk's image becomes the base of a reverse replica here (moved, not
   * copied; detached from the disk service first). The recovery host then
   * replicates the view into it. Harmless to repeat.
   */
  adoptImage(
    params: DiskRef & {
      imagePath: string;
      sizeBytes: number;
      durableSeq?: number;
      /** A physical server's staging image: its leg's md metadata is kept aside for `consolidate` (md-metadata-tail.ts). */
      keepMdMetadata?: boolean;
    },
  ): Promise<AdoptedDisk>;
  /**
   * Reprotect of a machine that runs on its own image (a libvirt domain; off
   * on this host): the image, in its format, is converted here into the base
   * of a replica, a whole consistent disk that the sink journal of the
   * machine's running copy continues from sequence 1. That copy's mirror
   * then compares its first copy with this replica (`mirror.protect`
   * `seeded`), so only blocks that differ cross the network. Refused while a
   * QEMU holds the image. Harmless to repeat.
   */
  seedFromImage(
    params: DiskRef & { imagePath: string; format: string; sizeBytes: number },
  ): Promise<{ diskKey: string; sizeBytes: number }>;
  /**
   * Failback of such a machine (its copy stopped, the reverse replication
   * drained and stopped): writes the replica's latest point into each image
   * in place, in its own format, only the blocks that differ from it (the
   * regions written since the seed), then removes the replica. Refused while
   * a QEMU holds an image. Harmless to repeat.
   */
  writeBackToImage(params: {
    machineId: string;
    restore: Array<{ diskId: string; imagePath: string; format: string }>;
  }): Promise<ImageWriteBack>;
  /**
   * Complete failover after failback, on the primary host (reverse replication
   * drained and stopped): merges everything into each base, moves it back to
   * the machine's image path and removes the reverse replica. Then attach the
   * disk with `resetJournal`. Harmless to repeat. Answers, per disk, what
   * was written into the image since it was adopted.
   */
  consolidate(params: {
    machineId: string;
    /**
     * `keepMdMetadata`: the image is a physical server's staging image; its
     * leg's md metadata (after the array's data) stays as it is, and the
     * regions answered stop where it begins (see md-metadata-tail.ts).
     */
    restore: Array<{ diskId: string; imagePath: string; keepMdMetadata?: boolean }>;
  }): Promise<Consolidated>;
  /**
   * Commit after failback, on the recovery host (the recovery machine is off):
   * the view's contents become the replica, the view is dropped, and the
   * replica expects the primary's fresh journal from sequence 1 (forward
   * replication with mode 'continue'). Harmless to repeat.
   */
  consolidateView(params: { machineId: string; viewId: string }): Promise<void>;
  /** Applies the machine's policy to its replica: how far back points are kept, how often app-consistent ones. */
  setRetention(params: {
    machineId: string;
    retentionSeconds: number;
    appConsistentFrequencySeconds: number;
  }): Promise<void>;
}

// ---- mirror (live protection of machines the disk service does not serve) --

/** A disk of a hypervisor domain that QEMU's active mirror copies into a sink (attached with `sink`). */
export interface MirroredDisk {
  diskId: string;
  /** The guest's device name in the domain (e.g. 'vda'). */
  target: string;
}

/** One mirrored disk's state (see the domain's MirroredDiskState). */
export type MirrorDiskStatus = MirroredDiskState;

export interface MirrorStatus extends MirrorSnapshot {
  machineId: string;
}

export interface Mirror {
  /**
   * Protects a running domain without restarting it: arms QEMU's active
   * mirror of each disk into its sink (attached before with `disk.attach`
   * `sink: true`), keeps it armed (domain restarts, agent restarts, lost
   * connections) and cuts crash-consistent points across the disks while it is.
   */
  protect(params: {
    machineId: string;
    domain: string;
    disks: MirroredDisk[];
    /**
     * The replica was seeded with (nearly) this disk's content
     * (`replica.seedFromImage`): the first arm compares too, so QEMU's
     * first copy journals only the blocks that differ from it.
     */
    seeded?: boolean;
  }): Promise<MirrorStatus>;
  /** Ends the mirror jobs and removes what Haven added to the domain; the sinks stay until detached. */
  unprotect(params: { machineId: string }): Promise<void>;
  /**
   * Ends the mirror jobs, keeping the sinks, the sender and the replica, so
   * libvirt allows what it refuses while a mirror runs (live migration,
   * snapshots, other block jobs). No point is cut until `resume`, which arms
   * the mirror again comparing with the replica (only changed blocks sent).
   */
  pause(params: { machineId: string }): Promise<MirrorStatus>;
  resume(params: { machineId: string }): Promise<MirrorStatus>;
  status(params: { machineId: string }): Promise<MirrorStatus>;
}

// ---- network (isolated test networks) -------------------------------------

/**
 * An admin's script run inside an isolated test network (a drill's
 * application check). The content travels with the request (the vault's
 * registry is the only source of scripts) and is checked against `sha256`.
 */
export interface NetworkProbeRequest {
  /** The isolated test network, as the drill machine's NIC names it. */
  network: string;
  script: { name: string; contentBase64: string; sha256: string };
  /** HAVEN_* variables; the only ones the script sees besides PATH, HOME, TMPDIR and LANG. */
  env: Record<`HAVEN_${string}`, string>;
  timeoutMs: number;
  /** The probe's own address on the test network, with its prefix (e.g. "10.0.0.254/24"). */
  probeAddress: string;
  /** Who the script runs as (never root): the host's dedicated script user unless named. */
  user?: string;
}

export interface NetworkProbeResult {
  exitCode: number | null;
  /** The signal that ended it (SIGKILL at the time limit). */
  signal: string | null;
  timedOut: boolean;
  durationMs: number;
  /** stdout and stderr interleaved, bounded (first and last bytes kept). */
  output: string;
  outputBytes: number;
  outputTruncated: boolean;
  /** The unprivileged user it ran as. */
  runAs: string;
  probeAddress: string;
}

export interface NetworkService {
  /**
   * Runs the script in a network namespace of its own whose only link is a
   * veth into the isolated network's bridge, at `probeAddress` with no route
   * out, as an unprivileged user; kills it (and whatever it left in the
   * namespace) at the time limit, then removes the namespace and the veth.
   * Refused for a network that is not an isolated network existing here.
   */
  runProbe(params: NetworkProbeRequest): Promise<NetworkProbeResult>;
}

// ---- physical servers (their NBD legs and agents) -------------------------

/**
 * Where servers reach this host: their agents enrol and report over HTTPS at
 * `agentPort`, their md raid1 legs connect over NBD with STARTTLS at
 * `nbdPort`. Both present a certificate signed by the host's server CA
 * (`caCertPem`) for `tlsHostname`; after enrolment the server presents a
 * client certificate from the same CA naming its machine id.
 */
export interface ServerEndpoint {
  address: string;
  nbdPort: number;
  agentPort: number;
  tlsHostname: string;
  caCertPem: string;
}

/** What the vault answers a host that redeems a server's one-time enrolment token. */
export interface ServerEnrolment {
  machineId: string;
  name: string;
  disks: Array<{ diskId: string; device: string; sizeBytes: number }>;
  writeBehind: number | null;
  nbdTimeoutSeconds: number;
}

export interface ServerLinkService {
  /** The endpoint servers use; null when this host does not serve physical servers. */
  endpoint(params?: Record<string, never>): Promise<ServerEndpoint | null>;
  /** The server's legs and its agent's last report. */
  status(params: { machineId: string }): Promise<ServerLinkSnapshot>;
  /**
   * Asks the server's agent for an ordered shutdown (the command rides on the
   * answer to its next report) and waits, bounded, until the agent reported
   * it is stopping and its legs disconnected after their last flush.
   */
  shutdown(params: { machineId: string; timeoutMs: number }): Promise<{ stopped: boolean; reason: string }>;
  /**
   * Forgets the server: its certificate is no longer accepted, its legs'
   * exports are detached and their staging images deleted. Other exports of
   * the machine (it may run here as a VM now) stay.
   */
  forget(params: { machineId: string }): Promise<void>;
  /**
   * From now on the host refuses the server's NBD legs and its agent's
   * reports (answered 403 "failed over"), and drops their connections: a
   * server that failed over, or comes back after a failover, can no longer
   * write into Haven's copy. Kept across agent restarts until `unfence`.
   */
  fence(params: { machineId: string; reason: string }): Promise<void>;
  unfence(params: { machineId: string }): Promise<void>;
  /**
   * Failback onto the server itself: builds the recovery environment the
   * server boots once (kernel, initramfs, iPXE script, syslinux config) into
   * `<dataDir>/servers/<machineId>/failback/`, replacing an earlier one. It
   * copies `ranges` of each disk from the leg's export on this host's server
   * NBD listener onto the server's own disk, through a degraded md of its own
   * member, with the server's own certificate and key (read from its agent's
   * state dir on its disk), and reports to this host's agent endpoint
   * (`status().agent.failback`). The server's last report is forgotten here.
   */
  failbackMedia(params: ServerFailbackMediaRequest): Promise<ServerFailbackMedia>;
  /**
   * One action on the server's BMC, then its power read back. The vault hands
   * the password per call; the host keeps and logs none of it.
   */
  bmc(params: { access: BmcAccess; action: BmcAction }): Promise<{ power: BmcPower }>;
}

/** A server's BMC with its password, as the vault hands it to the primary-site host for one call. */
export interface BmcAccess extends ServerBmc {
  password: string;
}

/**
 * status: read only. power-off: hard, at once. soft-off: an ACPI power
 * button press (the OS shuts down, or not). power-on. boot-pxe / boot-disk:
 * the device of the next boot only.
 */
export type BmcAction = 'status' | 'power-off' | 'soft-off' | 'power-on' | 'boot-pxe' | 'boot-disk';
export type BmcPower = 'on' | 'off';

export interface ServerFailbackMediaRequest {
  machineId: string;
  /** The server's disks, in the order of its agent's configuration (disk n is its /dev/md<n>). */
  disks: Array<{ diskId: string; device: string; ranges: DiskRegion[] }>;
  /** Where the server's agent keeps its state on its system partition; default /etc/haven. */
  stateDir?: string;
  /** The server's address while it runs the environment; default DHCP. */
  network?: { address: string; gateway?: string } | null;
  /** How long the build may take (the first one fetches the kernel and packages). */
  timeoutMs?: number;
}

export interface ServerFailbackMedia {
  /** The folder holding all of it: serve it by TFTP or HTTP for a network boot, or copy it to a boot medium. */
  dir: string;
  kernel: string;
  initramfs: string;
  ipxeScript: string;
  syslinuxConfig: string;
  cmdline: string;
  /** Bytes of the diverged ranges per disk (md's dirty chunks join them on the server). */
  disks: Array<{ diskId: string; rangeBytes: number }>;
  rangeBytes: number;
}

// ---- all of them ---------------------------------------------------------

export interface HostServices {
  host: HostInfoService;
  disk: DiskService;
  replication: Replication;
  replica: ReplicaStore;
  hypervisor: Hypervisor;
  mirror: Mirror;
  network: NetworkService;
  servers: ServerLinkService;
}

/** Every operation, by service: the RPC surface, and the guard against calling anything else. */
export const HOST_OPERATIONS = {
  host: ['info', 'ping'],
  disk: [
    'list',
    'attach',
    'detach',
    'writers',
    'insertMarker',
    'journalStatus',
    'holdWrites',
    'insertMarkerHeld',
    'releaseWrites',
  ],
  replication: ['start', 'stop', 'reconcile', 'status', 'allowSender', 'resync'],
  replica: [
    'listPoints',
    'openView',
    'viewInfo',
    'closeView',
    'checkFilesystems',
    'commitPoint',
    'deletePoints',
    'adoptImage',
    'consolidate',
    'seedFromImage',
    'writeBackToImage',
    'consolidateView',
    'setRetention',
  ],
  hypervisor: [
    'inventory',
    'list',
    'define',
    'undefine',
    'start',
    'shutdown',
    'powerOff',
    'status',
    'fence',
    'consoleLog',
    'moveDiskToImage',
    'freezeFilesystems',
    'thawFilesystems',
  ],
  mirror: ['protect', 'unprotect', 'pause', 'resume', 'status'],
  network: ['runProbe'],
  servers: ['endpoint', 'status', 'shutdown', 'forget', 'fence', 'unfence', 'failbackMedia', 'bmc'],
} as const satisfies { [S in keyof HostServices]: ReadonlyArray<keyof HostServices[S]> };

// Fails to compile if an interface gains an operation that is not listed above.
type Unlisted = {
  [S in keyof HostServices]: Exclude<keyof HostServices[S], (typeof HOST_OPERATIONS)[S][number]>;
}[keyof HostServices];
const everyOperationListed: [Unlisted] extends [never] ? true : Unlisted = true;
void everyOperationListed;

export type HostServiceName = keyof HostServices;

/** "disk.attach" and friends. */
export type HostMethod = {
  [S in HostServiceName]: `${S}.${(typeof HOST_OPERATIONS)[S][number]}`;
}[HostServiceName];

export function hostMethods(): HostMethod[] {
  return Object.entries(HOST_OPERATIONS).flatMap(([service, operations]) =>
    operations.map((operation) => `${service}.${operation}` as HostMethod),
  );
}
