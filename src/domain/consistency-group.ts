/**
 * Consistency (replication) groups, SPEC §4: machines that get shared
 * multi-machine recovery points. Pure rules; the vault stores membership as
 * `Machine.groupId` (the group's name).
 */
import { HavenError } from '../errors/index.ts';
import type { Machine } from './model.ts';

/** ASR replication groups hold up to 16 machines. */
export const MAX_GROUP_MEMBERS = 16;

const GROUP_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export type GroupMember = Pick<Machine, 'id' | 'name' | 'recoveryHostId' | 'osFamily' | 'groupId'>;

/**
 * Refuses a group whose members could not share points: too many, none,
 * another group's machines, unprotected ones (no recovery host), or members
 * with different recovery hosts or OS families. Names the problem.
 */
export function validateConsistencyGroup(name: string, members: readonly GroupMember[]): void {
  if (!GROUP_NAME.test(name)) {
    throw new HavenError(
      'validation_failed',
      `group name '${name.slice(0, 64)}' may only hold letters, digits, '.', '_' and '-' (1 to 63, starting with a letter or digit)`,
      { field: 'name' },
    );
  }
  if (members.length === 0) {
    throw new HavenError('validation_failed', `group '${name}' needs at least one machine`, {
      field: 'machineIds',
    });
  }
  if (members.length > MAX_GROUP_MEMBERS) {
    throw new HavenError(
      'limit_exceeded',
      `group '${name}' would hold ${members.length} machines; a consistency group holds at most ${MAX_GROUP_MEMBERS}`,
      { limit: MAX_GROUP_MEMBERS, count: members.length },
    );
  }
  const ids = new Set<string>();
  for (const m of members) {
    if (ids.has(m.id)) {
      throw new HavenError('validation_failed', `machine '${m.name}' is listed twice in group '${name}'`, {
        field: 'machineIds',
        machineId: m.id,
      });
    }
    ids.add(m.id);
    if (m.groupId !== null && m.groupId !== name) {
      throw new HavenError(
        'conflict',
        `machine '${m.name}' belongs to group '${m.groupId}'; remove it from there first`,
        { machineId: m.id, groupId: m.groupId },
      );
    }
    if (m.recoveryHostId === null) {
      throw new HavenError(
        'operation_not_allowed',
        `machine '${m.name}' is not protected (no recovery host); protect it before adding it to group '${name}'`,
        { machineId: m.id },
      );
    }
  }
  const first = members[0]!;
  for (const m of members) {
    if (m.recoveryHostId !== first.recoveryHostId) {
      throw new HavenError(
        'conflict',
        `machines of group '${name}' must share a recovery host: '${first.name}' replicates to host '${first.recoveryHostId}', '${m.name}' to host '${m.recoveryHostId}'`,
        { field: 'machineIds', machineIds: [first.id, m.id], problem: 'recovery-host' },
      );
    }
    if (m.osFamily !== first.osFamily) {
      throw new HavenError(
        'conflict',
        `machines of group '${name}' must share an OS family: '${first.name}' is ${first.osFamily}, '${m.name}' is ${m.osFamily}`,
        { field: 'machineIds', machineIds: [first.id, m.id], problem: 'os-family' },
      );
    }
  }
}
