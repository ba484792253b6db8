/**
 * A machine's replication figures over time, as the vault keeps them: each
 * figure the monitor records lands in one bucket of every tier; finer tiers
 * are kept for less time, so the rows per machine stay bounded whatever the
 * age of the machine (360 + 1440 + 4320).
 */
export const REPLICATION_TIERS = [
  { resolutionSeconds: 10, keepSeconds: 60 * 60 },
  { resolutionSeconds: 60, keepSeconds: 24 * 60 * 60 },
  { resolutionSeconds: 600, keepSeconds: 30 * 24 * 60 * 60 },
] as const;

export type ReplicationResolution = (typeof REPLICATION_TIERS)[number]['resolutionSeconds'];

export const REPLICATION_RESOLUTIONS: readonly ReplicationResolution[] = REPLICATION_TIERS.map(
  (t) => t.resolutionSeconds,
);

/** Most buckets one machine can have, over all tiers. */
export const MAX_HISTORY_ROWS = REPLICATION_TIERS.reduce(
  (sum, t) => sum + t.keepSeconds / t.resolutionSeconds,
  0,
);

/** One figure of the replication monitor. */
export interface ReplicationFigure {
  at: string;
  throughputBytesPerSec: number;
  pendingBytes: number;
  /** Null while the machine has no point yet. */
  rpoSeconds: number | null;
}

/**
 * One bucket of one tier: throughput is the mean of its figures, bytes pending
 * and RPO the worst (a spike of lag never averages away into a green chart).
 */
export interface ReplicationSample {
  /** Start of the bucket. */
  at: string;
  resolutionSeconds: ReplicationResolution;
  samples: number;
  throughputBytesPerSec: number;
  pendingBytes: number;
  rpoSeconds: number | null;
}

/** Start of the bucket of `resolutionSeconds` that `at` falls in (pure). */
export function bucketStart(at: string, resolutionSeconds: number): string {
  const ms = resolutionSeconds * 1000;
  return new Date(Math.floor(Date.parse(at) / ms) * ms).toISOString();
}

/** The bucket with one more figure in it (pure); `bucket` is undefined for the bucket's first figure. */
export function mergeFigure(
  bucket: ReplicationSample | undefined,
  figure: ReplicationFigure,
  resolutionSeconds: ReplicationResolution,
): ReplicationSample {
  if (!bucket) {
    return {
      at: bucketStart(figure.at, resolutionSeconds),
      resolutionSeconds,
      samples: 1,
      throughputBytesPerSec: figure.throughputBytesPerSec,
      pendingBytes: figure.pendingBytes,
      rpoSeconds: figure.rpoSeconds,
    };
  }
  const samples = bucket.samples + 1;
  return {
    ...bucket,
    samples,
    throughputBytesPerSec:
      bucket.throughputBytesPerSec + (figure.throughputBytesPerSec - bucket.throughputBytesPerSec) / samples,
    pendingBytes: Math.max(bucket.pendingBytes, figure.pendingBytes),
    rpoSeconds:
      bucket.rpoSeconds === null
        ? figure.rpoSeconds
        : figure.rpoSeconds === null
          ? bucket.rpoSeconds
          : Math.max(bucket.rpoSeconds, figure.rpoSeconds),
  };
}

/** Oldest bucket start a tier keeps at `now` (pure): older buckets are pruned. */
export function oldestKept(now: string, tier: (typeof REPLICATION_TIERS)[number]): string {
  return new Date(Date.parse(now) - tier.keepSeconds * 1000).toISOString();
}

const SPAN_SLACK_SECONDS = 60;

/**
 * The tier to answer a request for the history since `since` (pure): the
 * asked resolution if given, else the finest tier that still covers `since`.
 */
export function tierFor(
  since: string,
  now: string,
  resolutionSeconds?: ReplicationResolution,
): (typeof REPLICATION_TIERS)[number] {
  if (resolutionSeconds !== undefined) {
    return REPLICATION_TIERS.find((t) => t.resolutionSeconds === resolutionSeconds)!;
  }
  // "An hour ago" computed by a client a moment before the request still asks for the hour tier.
  const span = (Date.parse(now) - Date.parse(since)) / 1000 - SPAN_SLACK_SECONDS;
  return REPLICATION_TIERS.find((t) => t.keepSeconds >= span) ?? REPLICATION_TIERS.at(-1)!;
}

/** A machine's history as the vault answers it: one tier's buckets from `since` on. */
export interface ReplicationHistory {
  machineId: string;
  since: string;
  resolutionSeconds: ReplicationResolution;
  samples: ReplicationSample[];
}
