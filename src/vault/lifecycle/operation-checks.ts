import {
  assertValid,
  checkDiskLimit,
  type LifecycleOperation,
  type Problem,
  validateFailbackTarget,
  validateForReprotect,
  validateRecoverySettings,
} from '../../domain/index.ts';
import type { Machine } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import { checkServerOff } from '../servers/index.ts';
import type { VaultContext } from '../vault-context.ts';
import { refuseUnseenWriters } from './disk-ownership.ts';
import type { OperationWithOptions } from './operation-options.ts';

/** Operations that start the machine somewhere else and so need valid recovery settings (SPEC §5). */
const STARTS_A_MACHINE = new Set<LifecycleOperation>([
  'test-failover',
  'failover',
  'planned-failover',
  'change-recovery-point',
]);

/** Pre-failover validation of a machine's recovery settings against its recovery site, every problem at once. */
export async function recoveryProblems(vault: VaultContext, machine: Machine): Promise<Problem[]> {
  const recoveryHost = machine.recoveryHostId
    ? await vault.store.hosts.get(machine.recoveryHostId)
    : undefined;
  const site = recoveryHost ? await vault.store.sites.get(recoveryHost.siteId) : undefined;
  const primaryHost = await vault.store.hosts.get(machine.primaryHostId);
  const primarySite = primaryHost ? await vault.store.sites.get(primaryHost.siteId) : undefined;
  const others = (await vault.store.machines.list()).filter((m) => m.id !== machine.id);
  return validateRecoverySettings(machine, {
    networkMapping: primarySite?.networkMapping ?? {},
    ...(site ? { recoveryNetworks: [...new Set(Object.values(primarySite?.networkMapping ?? {}))] } : {}),
    usedAddresses: others.flatMap((m) =>
      m.recoverySettings.nics.flatMap((nic) =>
        nic.ip.mode === 'static' ? [{ address: nic.ip.address, machineId: m.id, machineName: m.name }] : [],
      ),
    ),
  });
}

/**
 * An imported domain is protected through QEMU's active mirror, which only a
 * libvirt host arms, and only on disks it knows by their device name.
 */
async function refuseUnmirrorable(vault: VaultContext, machine: Machine): Promise<void> {
  const host = await vault.store.hosts.get(machine.activeHostId);
  if (host && !host.capabilities.includes('hypervisor:libvirt')) {
    throw new HavenError(
      'operation_not_allowed',
      `Machine '${machine.name}' (${machine.state}) is libvirt domain '${machine.importedFrom?.domain}', but host '${host.name}' does not drive libvirt now: run its agent with --libvirt URI`,
      { machineId: machine.id, machineName: machine.name, state: machine.state, hostId: host.id },
    );
  }
  const unknown = machine.disks.filter((d) => !d.fromDomain?.target);
  if (unknown.length > 0) {
    throw new HavenError(
      'operation_not_allowed',
      `Machine '${machine.name}' (${machine.state}): disk(s) ${unknown.map((d) => d.id).join(', ')} were not discovered in domain '${machine.importedFrom?.domain}'; import the domain again`,
      { machineId: machine.id, machineName: machine.name, state: machine.state },
    );
  }
}

/** The checks an operation must pass before its job is queued; each throws a HavenError naming the problem. */
export function operationCheck(
  vault: VaultContext,
  request: OperationWithOptions,
): (machine: Machine) => Promise<void> {
  return async (machine) => {
    if (STARTS_A_MACHINE.has(request.operation)) assertValid(await recoveryProblems(vault, machine), machine);
    if (request.operation === 'reprotect') {
      assertValid(validateForReprotect(machine), machine);
      // Back onto the server itself: refused at the request while its host sees it running.
      if (
        machine.server &&
        machine.state !== 'failback-committed' &&
        !request.options.alternateHostId &&
        vault.hosts.isConnected(machine.primaryHostId)
      ) {
        await checkServerOff(vault, machine);
      }
      // Reprotecting back to the primary site needs the original machine, or a new one elsewhere.
      if (machine.state === 'failover-committed') {
        assertValid(validateFailbackTarget(machine, request.options.alternateHostId ?? null), machine);
      }
    }
    if (request.operation === 'failback') {
      assertValid(validateFailbackTarget(machine, request.options.alternateHostId ?? null), machine);
    }
    if (request.operation === 'enable-replication') {
      if (machine.importedFrom) await refuseUnmirrorable(vault, machine);
      const hostId = request.options.recoveryHostId;
      const host = (await vault.store.hosts.get(hostId)) ?? (await vault.store.hosts.getByName(hostId));
      if (!host)
        throw new HavenError('bad_request', `recoveryHostId: host '${hostId}' does not exist`, {
          field: 'recoveryHostId',
        });
      if (host.id === machine.activeHostId) {
        throw new HavenError(
          'bad_request',
          `recoveryHostId: '${host.name}' is the host machine '${machine.name}' runs on`,
          {
            field: 'recoveryHostId',
          },
        );
      }
      const policyId = request.options.policyId;
      if (!((await vault.store.policies.get(policyId)) ?? (await vault.store.policies.getByName(policyId)))) {
        throw new HavenError('bad_request', `policyId: policy '${policyId}' does not exist`, {
          field: 'policyId',
        });
      }
      checkDiskLimit(host, await vault.store.machines.countProtectedDisks(host.id), machine.disks.length);
      const source = await vault.store.hosts.get(machine.activeHostId);
      for (const [h, needs] of [
        [source, 'disk-service'],
        [host, 'replica-store'],
      ] as const) {
        if (h && !h.capabilities.includes(needs)) {
          throw new HavenError(
            'not_available',
            `Host '${h.name}' has no ${needs} (its agent reports: ${h.capabilities.join(', ') || 'nothing'}); upgrade or restart its host agent`,
            { hostId: h.id, capability: needs },
          );
        }
      }
      await refuseUnseenWriters(vault, machine);
    }
  };
}
