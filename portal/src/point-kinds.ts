import type { RecoveryPoint } from '../../src/domain/model.ts';
import { formatTime } from './format-time.ts';

/** How the timeline rows and the point picker group points, most useful for a failover first. */
export const POINT_KINDS = [
  { key: 'app', label: 'App-consistent' },
  { key: 'group', label: 'Multi-machine (group)' },
  { key: 'crash', label: 'Crash-consistent' },
] as const;

export type PointKind = (typeof POINT_KINDS)[number]['key'];

export function kindOf(p: Pick<RecoveryPoint, 'groupPointId' | 'type'>): PointKind {
  if (p.groupPointId) return 'group';
  return p.type === 'app-consistent' ? 'app' : 'crash';
}

/** A point as people name it: its time, kind and whether it is ready to use. */
export function describePoint(
  p: Pick<RecoveryPoint, 'time' | 'type' | 'groupPointId' | 'processed'>,
): string {
  const kind = POINT_KINDS.find((k) => k.key === kindOf(p))!.label.toLowerCase();
  return `${formatTime(p.time)} · ${kind}${p.processed ? '' : ' · not yet processed'}`;
}
