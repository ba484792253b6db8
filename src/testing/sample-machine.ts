import type { Machine, ServerLegState, ServerLinkSnapshot } from '../domain/model.ts';
import type { ServerEndpoint } from '../host/host-services.ts';

const AT = '2026-12-01T00:00:00.000Z';

/**
 * A machine failed over from host `h-primary` to `h-recovery`, no disks, as
 * the vault's unit tests start from; `patch` makes it what a test needs
 * (its recovery VM is named after it).
 */
export function sampleMachine(patch: Partial<Machine> = {}): Machine {
  const name = patch.name ?? 'web-1';
  return {
    id: 'm-1',
    name,
    primaryHostId: 'h-primary',
    recoveryHostId: 'h-recovery',
    activeHostId: 'h-recovery',
    policyId: null,
    groupId: null,
    osFamily: 'linux',
    state: 'failed-over',
    health: 'unknown',
    disks: [],
    recoverySettings: { targetName: name, cpus: 1, memoryMiB: 128, nics: [] },
    currentJobId: null,
    replication: null,
    runtime: { test: null, failover: null },
    originalExists: true,
    createdAt: AT,
    updatedAt: AT,
    ...patch,
  };
}

/** A physical server's NBD leg of a 1 GiB disk0, connected and in sync. */
export function sampleLeg(patch: Partial<ServerLegState> = {}): ServerLegState {
  return {
    diskId: 'disk0',
    sizeBytes: 1 << 30,
    connected: true,
    md: 'in-sync',
    syncedBytes: null,
    pointsAllowed: true,
    lastWriteAt: null,
    ...patch,
  };
}

/** A server link of one such leg, in sync, with no agent report. */
export function sampleServerLink(patch: Partial<ServerLinkSnapshot> = {}): ServerLinkSnapshot {
  return { state: 'in-sync', legs: [sampleLeg()], agent: null, problem: null, ...patch };
}

/** A primary host's endpoint for servers, as its `servers.endpoint` answers (the CA is a stand-in). */
export const SAMPLE_SERVER_ENDPOINT: ServerEndpoint = {
  address: '10.0.1.11',
  nbdPort: 10_810,
  agentPort: 8444,
  tlsHostname: 'primary.servers.haven',
  caCertPem: '-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n',
};
