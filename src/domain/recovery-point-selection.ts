/**
 * Choosing the recovery point a failover starts from (SPEC §3), and which
 * points retention and commit remove. Pure: callers pass the catalog in.
 */
import { HavenError } from '../errors/index.ts';
import type { Machine, Policy, RecoveryPoint } from './model.ts';

export type MultiMachineOption = 'latest-multi-machine-processed' | 'latest-multi-machine-app-consistent';

export type RecoveryPointOption =
  | 'latest'
  | 'latest-processed'
  | 'latest-app-consistent'
  | MultiMachineOption
  | 'custom';

export const RECOVERY_POINT_OPTIONS: readonly RecoveryPointOption[] = [
  'latest',
  'latest-processed',
  'latest-app-consistent',
  'latest-multi-machine-processed',
  'latest-multi-machine-app-consistent',
  'custom',
];

export type RecoveryPointRequest =
  | { option: 'latest' | 'latest-processed' | 'latest-app-consistent' }
  /** `members`: every machine of the consistency group (the machine itself is added if missing). */
  | { option: MultiMachineOption; members: readonly MachineName[] }
  | { option: 'custom'; pointId: string };

export type MachineName = Pick<Machine, 'id' | 'name'>;

export interface RecoveryPointSelection {
  point: RecoveryPoint;
  /** The replica store must first apply the journal up to `point` (only 'latest' and 'custom' can need it). */
  needsProcessing: boolean;
}

export interface GroupRecoveryPointSelection {
  groupPointId: string;
  /** The newest member point's time (members of one cut share it, give or take clock skew). */
  time: string;
  /** Each member's point, by machine id. */
  points: Record<string, RecoveryPoint>;
  needsProcessing: false;
}

function timeOf(point: RecoveryPoint): number {
  return Date.parse(point.time);
}

/**
 * Whether `a` is newer than `b`. One machine's points follow its replica's
 * history (sequence), whatever their clock times say; points of different
 * machines compare by time, equal times by sequence, so the choice never
 * depends on catalog order. Ids are names: as text `…@999` sorts after `…@1000`.
 */
function newer(a: RecoveryPoint, b: RecoveryPoint): boolean {
  if (a.machineId === b.machineId && a.sequence !== b.sequence) return a.sequence > b.sequence;
  const d = timeOf(a) - timeOf(b);
  return d > 0 || (d === 0 && a.sequence > b.sequence);
}

function newest(points: readonly RecoveryPoint[]): RecoveryPoint | undefined {
  let best: RecoveryPoint | undefined;
  for (const p of points) if (best === undefined || newer(p, best)) best = p;
  return best;
}

function noPoint(machine: MachineName, what: string): HavenError {
  return new HavenError('not_found', `No ${what} yet for machine '${machine.name}'`, {
    machineId: machine.id,
    machineName: machine.name,
  });
}

/** The point a failover of `machine` starts from, for the option the operator chose. */
export function selectRecoveryPoint(
  catalog: readonly RecoveryPoint[],
  machine: MachineName,
  request: RecoveryPointRequest,
): RecoveryPointSelection {
  const own = catalog.filter((p) => p.machineId === machine.id);
  switch (request.option) {
    case 'latest': {
      const point = newest(own);
      if (!point) throw noPoint(machine, 'recovery point');
      return { point, needsProcessing: !point.processed };
    }
    case 'latest-processed': {
      const point = newest(own.filter((p) => p.processed));
      if (!point) throw noPoint(machine, 'processed recovery point');
      return { point, needsProcessing: false };
    }
    case 'latest-app-consistent': {
      const point = newest(own.filter((p) => p.type === 'app-consistent'));
      if (!point) throw noPoint(machine, 'app-consistent point');
      return { point, needsProcessing: !point.processed };
    }
    case 'latest-multi-machine-processed':
    case 'latest-multi-machine-app-consistent': {
      const members = request.members.some((m) => m.id === machine.id)
        ? request.members
        : [machine, ...request.members];
      const group = selectGroupRecoveryPoint(catalog, members, request.option);
      return { point: group.points[machine.id]!, needsProcessing: false };
    }
    case 'custom': {
      const point = catalog.find((p) => p.id === request.pointId);
      if (!point) {
        throw new HavenError('not_found', `Recovery point '${request.pointId}' does not exist`, {
          machineId: machine.id,
          pointId: request.pointId,
        });
      }
      if (point.machineId !== machine.id) {
        throw new HavenError(
          'conflict',
          `Recovery point '${point.id}' belongs to machine '${point.machineId}', not to machine '${machine.name}'`,
          { machineId: machine.id, pointId: point.id, pointMachineId: point.machineId },
        );
      }
      return { point, needsProcessing: !point.processed };
    }
  }
}

/**
 * The multi-machine points (cuts) every member holds, processed (and, when
 * asked, app-consistent on every member), each member's point by machine id.
 * A cut missing on one member is no consistent point for the group.
 */
export function completeGroupCuts(
  catalog: readonly RecoveryPoint[],
  members: readonly MachineName[],
  appConsistent: boolean,
): Map<string, Map<string, RecoveryPoint>> {
  const memberIds = new Set(members.map((m) => m.id));
  const cuts = new Map<string, Map<string, RecoveryPoint>>();
  for (const p of catalog) {
    if (p.groupPointId === null || !memberIds.has(p.machineId) || !p.processed) continue;
    if (appConsistent && p.type !== 'app-consistent') continue;
    const cut = cuts.get(p.groupPointId) ?? new Map<string, RecoveryPoint>();
    cuts.set(p.groupPointId, cut);
    const seen = cut.get(p.machineId);
    if (!seen || newer(p, seen)) cut.set(p.machineId, p);
  }
  for (const [id, cut] of cuts) if (cut.size !== memberIds.size) cuts.delete(id);
  return cuts;
}

/**
 * The newest multi-machine point that every member has, processed (and, for
 * the app-consistent option, app-consistent on every member). A cut missing
 * on one member is no consistent point for the group.
 */
export function selectGroupRecoveryPoint(
  catalog: readonly RecoveryPoint[],
  members: readonly MachineName[],
  option: MultiMachineOption,
): GroupRecoveryPointSelection {
  const names = members.map((m) => m.name).join(', ');
  if (members.length === 0) {
    throw new HavenError('bad_request', `${option} needs the consistency group's machines`, { option });
  }
  const appConsistent = option === 'latest-multi-machine-app-consistent';
  const memberIds = new Set(members.map((m) => m.id));
  let best: GroupRecoveryPointSelection | undefined;
  let bestTime = Number.NEGATIVE_INFINITY;
  // Two cuts of equal time: the one later in the history of a member (the same for every member).
  const anchor = members[0]!.id;
  for (const [groupPointId, cut] of completeGroupCuts(catalog, members, appConsistent)) {
    const points = [...cut.values()];
    const latest = newest(points)!;
    const t = timeOf(latest);
    const later = () => cut.get(anchor)!.sequence > best!.points[anchor]!.sequence;
    if (best === undefined || t > bestTime || (t === bestTime && later())) {
      best = { groupPointId, time: latest.time, points: Object.fromEntries(cut), needsProcessing: false };
      bestTime = t;
    }
  }
  if (!best) {
    const what = appConsistent ? 'app-consistent' : 'processed';
    throw new HavenError(
      'not_found',
      `No ${what} multi-machine point yet shared by every machine of the group (${names})`,
      { option, machineIds: [...memberIds] },
    );
  }
  return best;
}

/**
 * Points a policy keeps at `now`: those no older than the retention window.
 * Each machine's newest point is always kept, so a stalled link never prunes
 * away the last way back.
 */
export function pointsWithinRetention(
  points: readonly RecoveryPoint[],
  policy: Pick<Policy, 'retentionSeconds'>,
  now: Date | string,
): RecoveryPoint[] {
  const cutoff = new Date(now).getTime() - policy.retentionSeconds * 1000;
  const newestOf = new Map<string, RecoveryPoint>();
  for (const p of points) {
    const seen = newestOf.get(p.machineId);
    if (!seen || newer(p, seen)) newestOf.set(p.machineId, p);
  }
  return points.filter((p) => timeOf(p) >= cutoff || newestOf.get(p.machineId) === p);
}

/** Commit keeps the chosen point only (SPEC §2 step 5): the machine's other points go. */
export function pointsToDeleteOnCommit(points: readonly RecoveryPoint[], chosenId: string): RecoveryPoint[] {
  const chosen = points.find((p) => p.id === chosenId);
  if (!chosen) {
    throw new HavenError('not_found', `Recovery point '${chosenId}' does not exist`, { pointId: chosenId });
  }
  return points.filter((p) => p.machineId === chosen.machineId && p.id !== chosenId);
}
