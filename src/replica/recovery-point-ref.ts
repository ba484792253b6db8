/**
 * Which recovery point an id names. Ids travel as text (host RPC, the vault's
 * database, a replica's meta file); inside the host they are this typed value,
 * so a sequence compares as a number and nothing slices strings apart.
 */
import { HavenError } from '../errors/index.ts';

/** A point of one replica disk: the disk as it stood after record `seq`. */
export interface DiskPointRef {
  kind: 'disk';
  diskKey: string;
  seq: number;
}

/** A point of a machine with several disks: the marker every one of its disks holds. */
export interface MarkerPointRef {
  kind: 'marker';
  machineId: string;
  marker: string;
}

export type RecoveryPointRef = DiskPointRef | MarkerPointRef;

/** `<diskKey>@<seq>` or `<machineId>@<marker>`: the form ids have on the wire. */
export function formatRecoveryPointRef(ref: RecoveryPointRef): string {
  return ref.kind === 'disk' ? `${ref.diskKey}@${ref.seq}` : `${ref.machineId}@${ref.marker}`;
}

/**
 * The inverse of `formatRecoveryPointRef`. A disk key holds a '/' and a
 * machine id none; a marker may hold '@', so the first '@' ends the owner.
 */
export function parseRecoveryPointRef(id: string): RecoveryPointRef {
  const at = id.indexOf('@');
  const owner = id.slice(0, at);
  const rest = id.slice(at + 1);
  if (at > 0 && !owner.includes('/')) return { kind: 'marker', machineId: owner, marker: rest };
  const seq = Number(rest);
  if (at <= 0 || !/^\d+$/.test(rest) || !Number.isSafeInteger(seq)) {
    throw new HavenError('bad_request', `'${id.slice(0, 200)}' is not a recovery point id`, {
      field: 'pointId',
    });
  }
  return { kind: 'disk', diskKey: owner, seq };
}
