/**
 * Which recovery points a replica keeps (pure: the store passes its candidate
 * points and the clock in). Every point of the recent window is kept (any point
 * in time); older ones are thinned to one per interval of each kind; those past
 * the retention window are dropped, and the records before the oldest kept point
 * can then be merged into the base image. The newest point is always kept, so a
 * disk whose source stopped sending still has something to fail over to.
 */
import { HavenError } from '../errors/index.ts';

export type RecoveryPointKind = 'crash-consistent' | 'app-consistent';

export interface RecoveryPointInfo {
  /** Stable: a disk point reference in its text form (`formatRecoveryPointRef`). */
  id: string;
  diskKey: string;
  /** Sequence number of the flush or marker record the point ends at. */
  seq: number;
  /** Source time of that record (ms since the epoch) and the same as ISO text. */
  timeMs: number;
  time: string;
  type: RecoveryPointKind;
  /** The marker id of a multi-machine (group) point, shared by every member disk. */
  groupPointId: string | null;
  label: string | null;
  /** Record bytes between the previous listed point (or the base) and this one. */
  sizeBytes: number;
}

export interface RetentionPolicy {
  /** Every point newer than this is kept (default 2 h). */
  fineWindowMs: number;
  /** Points older than this are dropped and merged into the base (default 24 h). */
  retentionMs: number;
  /** Between the two windows: one crash-consistent (and one group) point per interval (default 1 h). */
  thinIntervalMs: number;
  /** Between the two windows: one app-consistent point per interval (default 1 h). */
  appConsistentIntervalMs: number;
}

export const DEFAULT_RETENTION: RetentionPolicy = {
  fineWindowMs: 2 * 3600_000,
  retentionMs: 24 * 3600_000,
  thinIntervalMs: 3600_000,
  appConsistentIntervalMs: 3600_000,
};

export function checkRetention(policy: RetentionPolicy): RetentionPolicy {
  for (const [name, value] of Object.entries(policy)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new HavenError('validation_failed', `retention ${name} must be a positive whole number of ms`, {
        field: name,
        value,
      });
    }
  }
  if (policy.fineWindowMs > policy.retentionMs) {
    throw new HavenError(
      'validation_failed',
      `retention fine window (${policy.fineWindowMs} ms) is longer than the retention window (${policy.retentionMs} ms)`,
      { field: 'fineWindowMs' },
    );
  }
  return policy;
}

/** Thinning bucket of a point between the windows; points sharing a bucket keep only the newest. */
function bucketOf(p: RecoveryPointInfo, policy: RetentionPolicy): string {
  if (p.type === 'app-consistent') return `a${Math.floor(p.timeMs / policy.appConsistentIntervalMs)}`;
  const interval = Math.floor(p.timeMs / policy.thinIntervalMs);
  return p.groupPointId === null ? `c${interval}` : `g${interval}`;
}

/** The points kept at `nowMs`, oldest first; `candidates` are in sequence order. */
export function retainedPoints(
  candidates: readonly RecoveryPointInfo[],
  nowMs: number,
  policy: RetentionPolicy,
): RecoveryPointInfo[] {
  const newest = candidates.at(-1);
  const fineFrom = nowMs - policy.fineWindowMs;
  const keepFrom = nowMs - policy.retentionMs;
  const newestInBucket = new Map<string, number>();
  for (const p of candidates) {
    if (p.timeMs >= keepFrom && p.timeMs < fineFrom) newestInBucket.set(bucketOf(p, policy), p.seq);
  }
  return candidates.filter(
    (p) =>
      p === newest ||
      p.timeMs >= fineFrom ||
      (p.timeMs >= keepFrom && newestInBucket.get(bucketOf(p, policy)) === p.seq),
  );
}
