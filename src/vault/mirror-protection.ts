import type { Machine, MachineState } from '../domain/model.ts';
import { HavenError } from '../errors/index.ts';
import type { MirrorStatus } from '../host/host-services.ts';
import { hostServices } from './host-call.ts';
import { checkNotServerAtPrimary } from './machine-power.ts';
import type { VaultContext } from './vault-context.ts';

/** States in which a machine's running domain is mirrored, so its protection can be paused. */
const MIRRORED_STATES: readonly MachineState[] = ['protected', 'reverse-protected'];

/**
 * Pauses or resumes the live protection of an imported domain: libvirt
 * refuses live migration, snapshots and other block jobs while Haven's
 * mirror runs. Paused, the replica, its points and the sender stay; the
 * machine is shown paused (never healthy) until resumed, when the mirror is
 * armed again comparing with the replica, so only what changed is sent.
 */
export async function setProtectionPaused(
  vault: VaultContext,
  machine: Machine,
  paused: boolean,
): Promise<MirrorStatus> {
  const action = paused ? 'pause-protection' : 'resume-protection';
  checkNotServerAtPrimary(machine, action);
  if (!machine.importedFrom) {
    throw new HavenError(
      'operation_not_allowed',
      `Machine '${machine.name}' (${machine.state}) is served by Haven's disk service, not protected through a mirror of a libvirt domain: ${action} does not apply to it`,
      { machineId: machine.id, machineName: machine.name, state: machine.state },
    );
  }
  if (!MIRRORED_STATES.includes(machine.state) || machine.currentJobId !== null) {
    throw new HavenError(
      'operation_not_allowed',
      `Machine '${machine.name}' is ${machine.state}${machine.currentJobId ? ` (job ${machine.currentJobId} runs)` : ''}: ${action} is allowed only when it is ${MIRRORED_STATES.join(' or ')} with no job running`,
      { machineId: machine.id, machineName: machine.name, state: machine.state, allowed: MIRRORED_STATES },
    );
  }
  if (!vault.hosts.isConnected(machine.activeHostId)) {
    throw new HavenError(
      'unreachable',
      `Machine '${machine.name}': its host ${machine.activeHostId} is not connected to the vault, so its mirror cannot be ${paused ? 'paused' : 'resumed'}; start its agent and retry`,
      { machineId: machine.id, machineName: machine.name, hostId: machine.activeHostId },
    );
  }
  const mirror = hostServices(vault, machine.activeHostId).mirror;
  return paused ? mirror.pause({ machineId: machine.id }) : mirror.resume({ machineId: machine.id });
}
