/**
 * Consistency groups as the vault keeps them: a group is the set of machines
 * whose `groupId` is its name (no table of its own, so a machine can never
 * point at a group that does not exist). Every change is checked by
 * `validateConsistencyGroup` before any machine is written.
 */
import { isoNow } from '../../clock/index.ts';
import { validateConsistencyGroup } from '../../domain/consistency-group.ts';
import type { Machine, RecoveryPointType } from '../../domain/model.ts';
import { HavenError, notFound } from '../../errors/index.ts';
import { hostServices } from '../host-call.ts';
import type { VaultContext } from '../vault-context.ts';
import { type CutParticipant, type GroupCut, takeGroupCut } from './group-cut.ts';

export interface ConsistencyGroup {
  name: string;
  machineIds: string[];
  machineNames: string[];
  recoveryHostId: string | null;
  osFamily: Machine['osFamily'] | null;
}

type Vault = Pick<VaultContext, 'store' | 'clock'>;

function present(name: string, members: Machine[]): ConsistencyGroup {
  return {
    name,
    machineIds: members.map((m) => m.id),
    machineNames: members.map((m) => m.name),
    recoveryHostId: members[0]?.recoveryHostId ?? null,
    osFamily: members[0]?.osFamily ?? null,
  };
}

export async function listGroups(vault: Vault): Promise<ConsistencyGroup[]> {
  const byName = new Map<string, Machine[]>();
  for (const m of await vault.store.machines.list()) {
    if (m.groupId === null) continue;
    byName.set(m.groupId, [...(byName.get(m.groupId) ?? []), m]);
  }
  return [...byName].sort(([a], [b]) => a.localeCompare(b)).map(([name, ms]) => present(name, ms));
}

export async function groupMembers(vault: Vault, name: string): Promise<Machine[]> {
  const members = (await vault.store.machines.list()).filter((m) => m.groupId === name);
  if (members.length === 0) throw notFound('consistency group', name);
  return members;
}

export async function getGroup(vault: Vault, name: string): Promise<ConsistencyGroup> {
  return present(name, await groupMembers(vault, name));
}

/** A machine by id or name; unknown ones are refused by name. */
async function machineOr404(vault: Vault, ref: string): Promise<Machine> {
  const machine = (await vault.store.machines.get(ref)) ?? (await vault.store.machines.getByName(ref));
  if (!machine) throw notFound('machine', ref);
  return machine;
}

async function setGroup(vault: Vault, machines: Machine[], groupId: string | null): Promise<void> {
  const now = isoNow(vault.clock);
  for (const m of machines) {
    // Re-read so the write carries the latest state of every other field.
    const fresh = await vault.store.machines.get(m.id);
    if (fresh && fresh.groupId !== groupId) {
      await vault.store.machines.update({ ...fresh, groupId, updatedAt: now });
    }
  }
}

export async function createGroup(
  vault: Vault,
  name: string,
  machineRefs: string[],
): Promise<ConsistencyGroup> {
  if ((await vault.store.machines.list()).some((m) => m.groupId === name)) {
    throw new HavenError(
      'conflict',
      `consistency group '${name}' already exists; add machines to it instead`,
      {
        field: 'name',
      },
    );
  }
  const members: Machine[] = [];
  for (const ref of machineRefs) members.push(await machineOr404(vault, ref));
  validateConsistencyGroup(name, members);
  await setGroup(vault, members, name);
  return getGroup(vault, name);
}

export async function addMember(vault: Vault, name: string, machineRef: string): Promise<ConsistencyGroup> {
  const members = await groupMembers(vault, name);
  const machine = await machineOr404(vault, machineRef);
  if (machine.groupId === name) return present(name, members);
  validateConsistencyGroup(name, [...members, machine]);
  await setGroup(vault, [machine], name);
  return getGroup(vault, name);
}

/** Removing the last member ends the group. */
export async function removeMember(vault: Vault, name: string, machineRef: string): Promise<void> {
  await groupMembers(vault, name);
  const machine = await machineOr404(vault, machineRef);
  if (machine.groupId !== name) {
    throw new HavenError(
      'conflict',
      `machine '${machine.name}' is not a member of consistency group '${name}'${machine.groupId ? ` (it belongs to '${machine.groupId}')` : ''}`,
      { machineId: machine.id, groupId: machine.groupId },
    );
  }
  await setGroup(vault, [machine], null);
}

/** Each host running members, with its disk service (a cut holds writes where they happen). */
export function cutParticipants(vault: VaultContext, members: readonly Machine[]): CutParticipant[] {
  const byHost = new Map<string, string[]>();
  for (const m of members) byHost.set(m.activeHostId, [...(byHost.get(m.activeHostId) ?? []), m.id]);
  return [...byHost].map(([hostId, machineIds]) => ({
    hostId,
    machineIds,
    disk: hostServices(vault, hostId).disk,
  }));
}

/** Takes one cut of the whole group now (crash-consistent unless told otherwise). */
export async function cutGroupNow(
  vault: VaultContext,
  name: string,
  options: { type?: RecoveryPointType; holdTimeoutMs?: number } = {},
): Promise<GroupCut> {
  const members = await groupMembers(vault, name);
  return takeGroupCut({
    participants: cutParticipants(vault, members),
    ...(options.type ? { type: options.type } : {}),
    ...(options.holdTimeoutMs ? { holdTimeoutMs: options.holdTimeoutMs } : {}),
  });
}
