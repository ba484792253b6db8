import { randomUUID } from 'node:crypto';
import type { Machine } from '../domain/model.ts';

/** What registering a machine decides; the rest is what every new machine starts with. */
export type NewMachine = Pick<Machine, 'name' | 'osFamily' | 'disks' | 'recoverySettings'> &
  Partial<Pick<Machine, 'server' | 'importedFrom'>>;

/**
 * A machine as it is registered (an API create, a libvirt import, a server
 * added): unprotected on `hostId`, nothing replicated, no job, no copy elsewhere.
 */
export function newMachine(fields: NewMachine, hostId: string, now: string): Machine {
  return {
    id: randomUUID(),
    primaryHostId: hostId,
    recoveryHostId: null,
    activeHostId: hostId,
    policyId: null,
    groupId: null,
    state: 'unprotected',
    health: 'unknown',
    currentJobId: null,
    replication: null,
    runtime: { test: null, failover: null },
    originalExists: true,
    createdAt: now,
    updatedAt: now,
    ...fields,
  };
}
