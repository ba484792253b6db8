/**
 * A machine's recovery points, from its replica disks' points. A one-disk
 * machine's points are its disk's points. For several disks only the markers
 * every disk holds (the disk service inserts them on all disks at one
 * instant) make a consistent point.
 */
import type { RecoveryPoint } from '../domain/model.ts';
import { HavenError } from '../errors/index.ts';
import { formatRecoveryPointRef, type RecoveryPointRef } from './recovery-point-ref.ts';
import type { ReplicaStore } from './replica-store.ts';
import type { RecoveryPointInfo } from './retention.ts';

export type PointLister = Pick<ReplicaStore, 'listPoints'>;

/** The marker that names a point on every disk of a machine: a group cut's id, else its label. */
const markerOf = (p: RecoveryPointInfo): string | null => p.groupPointId ?? p.label;

export function machinePoints(machineId: string, diskKeys: string[], store: PointLister): RecoveryPoint[] {
  if (diskKeys.length === 0) return [];
  const perDisk = diskKeys.map((k) => store.listPoints(k));
  const toPoint = (p: RecoveryPointInfo, id: string): RecoveryPoint => ({
    id,
    machineId,
    time: p.time,
    sequence: p.seq,
    type: p.type === 'app-consistent' ? 'app-consistent' : 'crash-consistent',
    groupPointId: p.groupPointId,
    // The replica store serves every durable record at once: nothing waits to be processed.
    processed: true,
    sizeBytes: p.sizeBytes,
  });
  if (diskKeys.length === 1) return perDisk[0]!.map((p) => toPoint(p, p.id));
  const common = perDisk[0]!.filter(
    (p) => markerOf(p) !== null && perDisk.every((list) => list.some((q) => markerOf(q) === markerOf(p))),
  );
  return common.map((p) =>
    toPoint(p, formatRecoveryPointRef({ kind: 'marker', machineId, marker: markerOf(p)! })),
  );
}

/** The sequence of one of the machine's disks that a machine point stands for. */
export function seqOfPoint(store: PointLister, diskKey: string, point: RecoveryPointRef): number {
  if (point.kind === 'disk') {
    if (point.diskKey === diskKey) return point.seq;
    throw new HavenError('not_found', `disk '${diskKey}' has no point '${formatRecoveryPointRef(point)}'`);
  }
  const match = store.listPoints(diskKey).find((p) => markerOf(p) === point.marker);
  if (!match)
    throw new HavenError('not_found', `disk '${diskKey}' has no point for marker '${point.marker}'`);
  return match.seq;
}
