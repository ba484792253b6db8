import type { Region } from '../disk/index.ts';
import { HavenError } from '../errors/index.ts';
import type { SyncStart } from '../replication/replica-sink.ts';
import { writeFileAtomic } from '../storage/atomic-file.ts';
import { readOptionalText } from '../storage/optional-file.ts';
import type { RecoveryPointInfo, RetentionPolicy } from './retention.ts';

/** A sync in progress, as the replica remembers it. */
export type SyncState = Omit<SyncStart, 'regions'>;

/**
 * What a replica must remember beside its base image and segments, replaced
 * atomically at each step of a merge, sync or commit.
 */
export interface ReplicaMeta {
  version: 1;
  diskKey: string;
  sizeBytes: number;
  /** The base image holds the disk exactly as after this record (-1: before any). */
  baseSeq: number;
  /** The recovery point at `baseSeq`, when it is one (it stays listed while retained). */
  basePoint: RecoveryPointInfo | null;
  /** A merge through this sequence may have begun: the base is redone up to it before anything else. */
  mergeIntent: { through: number; point: RecoveryPointInfo | null; pointsOpen: boolean } | null;
  /** A commit is dropping the records after this sequence: finished on open. */
  discardAfter: number | null;
  /** A sync in progress: no recovery point exists until it completes. */
  sync: SyncState | null;
  /** Points exist only from the first flush at or after this sequence (the end of the last sync). */
  pointFloor: number;
  /** The base is at or after that first flush: every later flush or marker is a point. */
  pointsOpen: boolean;
  /** Per-disk retention overriding the store's default. */
  retention: RetentionPolicy | null;
  /**
   * Failed over (or committed): records from the old primary are refused, since
   * the machine now runs from a view of this replica. Lifted by `consolidateView`.
   */
  sealed?: boolean;
  /** An image being moved in as the base (`adoptImage`): finished on open. */
  adopting?: string | null;
  /** The image path the base was adopted from. */
  adoptedFrom?: string | null;
  /** The base is being moved out to this path and the replica removed (`consolidate`): finished on open. */
  restoreTo?: string | null;
  /** A writable view's overlay is being merged into the base (`consolidateView`): redone on open. */
  consolidating?: { viewId: string; seq: number; durableSeq: number; timeMs: number } | null;
  /** The last view merged into the base: its leftover directory is removed on open. */
  consolidatedView?: string | null;
  /**
   * An adopted base (reprotect): every byte range written into it since it
   * was adopted, merged (what failback to a physical server copies onto its
   * disk). Absent for a replica that was not adopted.
   */
  written?: Region[];
  /** During a sync of an adopted base: the ranges it may write (the whole disk when null). */
  syncMayWrite?: Region[] | null;
}

export function newMeta(diskKey: string, sizeBytes: number): ReplicaMeta {
  return {
    version: 1,
    diskKey,
    sizeBytes,
    baseSeq: -1,
    basePoint: null,
    mergeIntent: null,
    discardAfter: null,
    sync: null,
    pointFloor: 0,
    pointsOpen: false,
    retention: null,
  };
}

export async function readMeta(path: string): Promise<ReplicaMeta | null> {
  const text = await readOptionalText(path);
  if (text === null) return null;
  const meta = JSON.parse(text) as ReplicaMeta;
  if (meta.version !== 1 || typeof meta.baseSeq !== 'number' || typeof meta.sizeBytes !== 'number') {
    throw new HavenError('internal', `replica metadata '${path}' is not a version 1 replica`, { path });
  }
  return meta;
}

export function writeMeta(path: string, meta: ReplicaMeta): Promise<void> {
  return writeFileAtomic(path, `${JSON.stringify(meta)}\n`);
}
