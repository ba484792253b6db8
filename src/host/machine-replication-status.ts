/**
 * One machine's replication status from its disks': the worst state, the
 * oldest pending write, and what is still to copy.
 */
import type { WriteJournal } from '../disk/index.ts';
import { regionBytes } from '../replica/index.ts';
import type { DiskReplicationStatus, SyncReport } from '../replication/index.ts';
import { diskIdOf, isDiskOf } from './disk-key.ts';
import type { ReplicationStatus } from './host-services.ts';

/** What a replicated disk reads from: its journal, for the status (lag, regions still to copy). */
export interface SendingFrom {
  journal: Pick<WriteJournal, 'dirtyRegions'>;
  /** The disk service's export it reads, or null for a writable view. */
  exportName: string | null;
  /** The writable view it reads, or null for the disk service. */
  viewId: string | null;
}

/** Worst first: the machine is as far along as its least advanced disk. */
const RANK = ['error', 'connecting', 'initial-sync', 'resync', 'paused', 'streaming'] as const;

export function machineReplicationStatus(
  machineId: string,
  all: DiskReplicationStatus[],
  sending: ReadonlyMap<string, SendingFrom>,
  /** When the disk service's export was last written (ISO time), if ever. */
  lastWriteOf: (exportName: string) => string | null,
): Omit<ReplicationStatus, 'brokenDisks'> {
  const mine = all.filter((s) => isDiskOf(s.diskKey, machineId));
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
  const worst = mine.map(effectiveState).sort((a, b) => RANK.indexOf(a) - RANK.indexOf(b))[0]!;
  const syncing = mine.filter((s) => s.syncProgress !== null);
  // Each disk's share of the copy is its size: a small disk done does not make the machine half done.
  const weight = (s: DiskReplicationStatus) => Math.max(1, s.lastSync?.diskBytes ?? 1);
  const totalWeight = syncing.reduce((sum, s) => sum + weight(s), 0);
  const progress =
    syncing.length === 0
      ? 100
      : Math.min(
          99,
          Math.floor((100 * syncing.reduce((sum, s) => sum + weight(s) * s.syncProgress!, 0)) / totalWeight),
        );
  const copies = syncing.flatMap((s) => (s.lastSync === null ? [] : [syncBytes(s.lastSync)]));
  let lag: number | null = 0;
  let queued = 0;
  for (const s of mine) {
    const from = sending.get(s.diskKey);
    // Regions still to copy (diverged regions of a reprotect, a journal overflow) are queued too.
    if (s.resyncRequired && from !== undefined) queued += regionBytes(from.journal.dirtyRegions());
    queued += s.bytesPending;
    if (s.bytesPending === 0) continue;
    const lastWriteAt = from?.exportName ? lastWriteOf(from.exportName) : null;
    const lastWrite = Date.parse(lastWriteAt ?? '') || Date.now();
    const since = s.lastAckedRecordTimeMs ?? lastWrite;
    lag = Math.max(lag ?? 0, (Date.now() - Math.min(since, lastWrite)) / 1000);
  }
  const resyncing = mine.some((s) => s.resyncRequired);
  const state = worst === 'connecting' ? (syncing.length > 0 ? 'initial-sync' : 'streaming') : worst;
  return {
    machineId,
    state: state === 'streaming' && resyncing ? 'resync' : state,
    progress,
    lagSeconds: lag,
    queuedBytes: queued,
    sentBytes: mine.reduce((sum, s) => sum + s.wireBytesSent, 0),
    lastError: mine.find((s) => s.lastError)?.lastError ?? null,
    copy:
      copies.length === 0
        ? null
        : {
            doneBytes: copies.reduce((n, c) => n + c.doneBytes, 0),
            totalBytes: copies.reduce((n, c) => n + c.totalBytes, 0),
          },
    resyncRequests: mine.map((s) => ({
      diskId: diskIdOf(s.diskKey),
      senderId: s.resyncRequests.senderId,
      done: s.resyncRequests.done,
    })),
    syncs: mine.flatMap((s) =>
      s.lastSync === null
        ? []
        : [
            {
              diskId: diskIdOf(s.diskKey),
              kind: s.lastSync.kind,
              diskBytes: s.lastSync.diskBytes,
              regionBytes: s.lastSync.regionBytes,
              copiedBytes: s.lastSync.copiedBytes,
              comparedBytes: s.lastSync.comparedBytes,
              wireBytes: s.lastSync.wireBytes,
              blocksCompared: s.lastSync.blocksCompared,
              blocksDiffering: s.lastSync.blocksDiffering,
              completed: s.lastSync.completed,
            },
          ],
    ),
  };
}

/**
 * A sender connecting or streaming with a copy still due is not caught up:
 * it says so from the moment it starts, so a wait for "streaming with nothing
 * queued" cannot end before the copy has even begun.
 */
function effectiveState(s: DiskReplicationStatus): DiskReplicationStatus['state'] {
  // Connecting again after a failure (a refusal, a cut link) is not streaming until a session resumes.
  if (s.state === 'connecting' && s.lastError !== null) return 'error';
  if ((s.state === 'connecting' || s.state === 'streaming') && s.syncDue !== null) {
    return s.syncDue === 'initial' ? 'initial-sync' : 'resync';
  }
  return s.state;
}

/** Bytes a sync has worked through of what it has to: a hash compare reads the whole disk, then copies what differs. */
function syncBytes(report: SyncReport): { doneBytes: number; totalBytes: number } {
  const whole = report.kind === 'initial' || report.kind === 'full';
  return {
    doneBytes: (report.comparedBytes ?? 0) + report.copiedBytes,
    totalBytes: whole
      ? report.diskBytes
      : report.regionBytes + (report.comparedBytes === null ? 0 : report.diskBytes),
  };
}
