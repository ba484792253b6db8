/**
 * An operator's own machine on its host: start it (disks through the disk
 * service, so it can be protected later without a restart), stop it, and
 * take it off the host when it is deleted. The lifecycle jobs run the copies
 * a failover or drill starts; this runs the machine itself, where it lives.
 */
import { allowedOperations, isInProgress, serverAtPrimary, vmNameOf, where } from '../domain/index.ts';
import type { Machine, MachineState } from '../domain/model.ts';
import { HavenError } from '../errors/index.ts';
import type {
  ConsoleLog,
  MachineDefinition,
  MachinePowerState,
  MachineStatus,
  ShutdownResult,
} from '../host/host-services.ts';
import { MIN_MEMORY_MIB, validateMachineDefinition } from '../hypervisor/machine-definition.ts';
import { hostServices } from './host-call.ts';
import type { VaultContext } from './vault-context.ts';

/** States in which the machine runs on its active host as itself (not a drill or failover copy). */
export const POWER_STATES: readonly MachineState[] = ['unprotected', 'protected'];

/** Start and stop are for a machine at rest where it lives: not while a job moves it. */
export function checkPowerAllowed(machine: Machine, action: 'start' | 'stop'): void {
  checkNotServerAtPrimary(machine, action);
  if (POWER_STATES.includes(machine.state) && machine.currentJobId === null) return;
  throw new HavenError(
    'operation_not_allowed',
    `Machine '${machine.name}' is ${machine.state}${machine.currentJobId ? ` (job ${machine.currentJobId} runs)` : ''}: ${action} is allowed only when it is ${POWER_STATES.join(' or ')} with no job running; use the lifecycle operations for its copies`,
    {
      machineId: machine.id,
      machineName: machine.name,
      state: machine.state,
      allowedOperations: allowedOperations(machine.state),
    },
  );
}

/**
 * A physical server runs on its own hardware at its primary site: no
 * hypervisor there starts, stops or mirrors it (it runs as a VM only after
 * a failover, on its recovery host).
 */
export function checkNotServerAtPrimary(machine: Machine, action: string): void {
  if (!serverAtPrimary(machine)) return;
  throw new HavenError(
    'operation_not_allowed',
    `Machine '${machine.name}' is a physical server (kind server, ${machine.state}) running on its own hardware at its primary site: ${action} does not apply to it there; power it through its own console or BMC`,
    { machineId: machine.id, machineName: machine.name, state: machine.state, kind: 'server' },
  );
}

function requireConnected(vault: VaultContext, machine: Machine, why: string): void {
  if (vault.hosts.isConnected(machine.activeHostId)) return;
  throw new HavenError(
    'unreachable',
    `Machine '${machine.name}': its host ${machine.activeHostId} is not connected to the vault, so ${why}; start its agent and retry`,
    { machineId: machine.id, machineName: machine.name, hostId: machine.activeHostId },
  );
}

/** What the hypervisor runs for the machine: its settings, NICs on their own networks, disks as NBD exports. */
export function machineDefinition(machine: Machine, disks: MachineDefinition['disks']): MachineDefinition {
  const { cpus, memoryMiB, boot, nics } = machine.recoverySettings;
  return {
    name: machine.name,
    cpus,
    memoryMiB,
    disks,
    nics: nics.map((nic) => ({ network: nic.network, mac: nic.mac, ip: nic.ip })),
    ...(boot ? { boot } : {}),
  };
}

/**
 * Runs the machine on its active host with every disk attached through the
 * disk service (created sparse when missing), as an operator's machine
 * would be. Safe to repeat.
 */
export async function startMachine(vault: VaultContext, machine: Machine): Promise<MachineStatus> {
  requireConnected(vault, machine, 'it cannot be started');
  const services = hostServices(vault, machine.activeHostId);
  if (machine.importedFrom) {
    // The operator's domain, on its own disks: started as libvirt defines it.
    const name = vmNameOf(machine);
    const current = await services.hypervisor.status({ name });
    return current.state === 'running' ? current : services.hypervisor.start({ name });
  }
  const disks = [];
  for (const d of machine.disks) {
    const exported = await services.disk.attach({
      machineId: machine.id,
      diskId: d.id,
      source: d.source,
      sizeBytes: d.sizeBytes,
    });
    disks.push({ diskId: d.id, nbdUri: exported.nbdUri });
  }
  const status = await services.hypervisor
    .status({ name: machine.name })
    .catch(() => ({ name: machine.name, state: 'absent' as const }));
  if (status.state === 'absent') {
    await services.hypervisor.define({ machine: machineDefinition(machine, disks) });
  }
  if (status.state === 'running') return status;
  return services.hypervisor.start({ name: machine.name });
}

/**
 * ACPI shutdown: the guest gets `timeoutSeconds` to power itself down; then
 * it is powered off when `forceOff`, else the stop fails with the machine
 * still running (409, naming it).
 */
export async function stopMachine(
  vault: VaultContext,
  machine: Machine,
  options: { timeoutSeconds: number; forceOff: boolean },
): Promise<ShutdownResult> {
  requireConnected(vault, machine, 'it cannot be stopped');
  const hypervisor = hostServices(vault, machine.activeHostId).hypervisor;
  const status = await hypervisor.status({ name: vmNameOf(machine) });
  if (status.state === 'absent' || status.state === 'shut-off') {
    return { ...status, outcome: 'already-off', seconds: 0 };
  }
  return hypervisor.shutdown({
    name: vmNameOf(machine),
    timeoutSeconds: options.timeoutSeconds,
    onTimeout: options.forceOff ? 'power-off' : 'fail',
  });
}

/** The machine's power state on its host; 'absent' where the host has no hypervisor. */
export async function powerStateOf(vault: VaultContext, machine: Machine): Promise<MachinePowerState> {
  requireConnected(vault, machine, 'Haven cannot verify that it is stopped');
  const status = await hostServices(vault, machine.activeHostId)
    .hypervisor.status({ name: vmNameOf(machine) })
    .catch((error: unknown) => {
      if (error instanceof HavenError && error.code === 'not_available') return { state: 'absent' as const };
      throw error;
    });
  return status.state;
}

/**
 * Before the machine is forgotten: it must be off; its definition and its
 * disk service exports go (the images stay in the host's storage folder).
 * An imported domain stays as libvirt has it, running or not.
 */
export async function removeFromHost(vault: VaultContext, machine: Machine): Promise<void> {
  // An imported domain is the operator's and may keep running: Haven only forgets it.
  const power = machine.importedFrom ? 'absent' : await powerStateOf(vault, machine);
  if (power === 'running' || power === 'paused') {
    throw new HavenError(
      'operation_not_allowed',
      `Machine '${machine.name}' is ${power} on its host: only a stopped machine can be deleted; stop it first (haven machines stop ${machine.name})`,
      { machineId: machine.id, machineName: machine.name, state: machine.state, power },
    );
  }
  const services = hostServices(vault, machine.activeHostId);
  if (power === 'shut-off') await services.hypervisor.undefine({ name: machine.name });
  const attached = await services.disk.list({ machineId: machine.id }).catch((error: unknown) => {
    if (error instanceof HavenError && error.code === 'not_available') return [];
    throw error;
  });
  for (const d of attached) await services.disk.detach({ machineId: machine.id, diskId: d.diskId });
}

// Stands in for the disk service's export when a definition is only checked.
const PLACEHOLDER_NBD = 'nbd+unix:///check?socket=/run/check.sock';

/**
 * What the hypervisor would refuse at start, refused at the request (400
 * naming the field). `nicsAndBootOnly` (registering a machine): only the
 * NICs and the boot, which the operator gives for this host; CPUs, memory
 * and disk ids of a registered machine may still be changed before it starts.
 */
export function checkRunnable(machine: Machine, options: { nicsAndBootOnly?: boolean } = {}): void {
  const definition = machineDefinition(
    machine,
    machine.disks.map((d) => ({ diskId: d.id, nbdUri: PLACEHOLDER_NBD })),
  );
  const check = (candidate: MachineDefinition, fieldOf: (field: string) => string) => {
    try {
      validateMachineDefinition(candidate);
    } catch (error) {
      if (!(error instanceof HavenError) || error.code !== 'validation_failed') throw error;
      const field = fieldOf(String(error.details.field ?? ''));
      throw new HavenError('bad_request', `${field}: ${error.message}`, { field, machineName: machine.name });
    }
  };
  if (!options.nicsAndBootOnly) {
    check(definition, (f) => (f.startsWith('disks') ? 'disks' : `recoverySettings.${f}`));
    return;
  }
  const probe = {
    ...definition,
    cpus: 1,
    memoryMiB: MIN_MEMORY_MIB,
    disks: [{ diskId: 'check', nbdUri: PLACEHOLDER_NBD }],
    nics: [],
  };
  const { boot, ...withoutBoot } = probe;
  if (boot) check(probe, (f) => `recoverySettings.${f}`);
  definition.nics.forEach((nic, i) => {
    check({ ...withoutBoot, nics: [nic] }, (f) => `recoverySettings.${f.replace(/^nics\./, `nics.${i}.`)}`);
  });
}

/** Which console: the machine where it runs (or its failover copy), or the drill copy of a test failover. */
export type ConsoleCopy = 'running' | 'drill';

function runningCopyOf(machine: Machine, which: ConsoleCopy): { hostId: string; vmName: string } {
  if (which === 'drill') {
    const drill = machine.runtime.test;
    if (!drill) {
      throw new HavenError(
        'not_found',
        `Machine '${machine.name}' has no drill copy (state ${machine.state}): a test failover starts one; read the machine's own console without copy=drill`,
        { machineId: machine.id, machineName: machine.name, state: machine.state },
      );
    }
    return { hostId: drill.hostId, vmName: drill.vmName };
  }
  // The copy a failover started, while it runs; after a failback it stays recorded (shut down) until commit.
  const copy = machine.runtime.failover;
  return copy && !backAtPrimary(machine)
    ? { hostId: copy.hostId, vmName: copy.vmName }
    : { hostId: machine.activeHostId, vmName: vmNameOf(machine) };
}

function backAtPrimary(machine: Machine): boolean {
  // Committing after a failback (a failover's commit runs at the recovery site, on the copy).
  if (machine.state === 'committing') return machine.activeHostId === machine.primaryHostId;
  return !isInProgress(machine.state) && where(machine.state) === 'primary';
}

/** The serial console of the machine where it runs (current or last run). */
export async function consoleOf(
  vault: VaultContext,
  machine: Machine,
  tail?: number,
  which: ConsoleCopy = 'running',
): Promise<ConsoleLog> {
  const { hostId, vmName } = runningCopyOf(machine, which);
  if (!vault.hosts.isConnected(hostId)) {
    throw new HavenError(
      'unreachable',
      `Machine '${machine.name}': its host ${hostId} is not connected to the vault, so its console cannot be read`,
      { machineId: machine.id, machineName: machine.name, hostId },
    );
  }
  return hostServices(vault, hostId).hypervisor.consoleLog({
    name: vmName,
    ...(tail === undefined ? {} : { tail }),
  });
}

const FOLLOW_POLL_MS = 500;
// Lines remembered to find where the last read ended in the next one (the host keeps the last MiB).
const ANCHOR_LINES = 20;

/**
 * The lines of `now` after those already sent: `anchor` is their last lines,
 * `count` how many lines the last read had. The log only grows during a run,
 * so the anchor is first looked for where that read ended; else (the host
 * dropped the oldest lines) at its latest place; else it is a new run: all.
 */
export function linesAfter(anchor: readonly string[], count: number, now: readonly string[]): string[] {
  if (anchor.length === 0) return now.slice(Math.min(count, now.length));
  const endsAt = (end: number) =>
    end >= anchor.length &&
    end <= now.length &&
    anchor.every((line, i) => now[end - anchor.length + i] === line);
  if (endsAt(count)) return now.slice(count);
  for (let end = now.length; end >= anchor.length; end--) if (endsAt(end)) return now.slice(end);
  return [...now];
}

/**
 * Sends the lines already read, then each new console line as it comes,
 * until the client goes away or the console is gone (the machine deleted, its
 * drill ended); while its host is away it waits for it to come back.
 */
export async function followConsole(
  vault: VaultContext,
  machine: Machine,
  /** The whole log as read first, and how many of its last lines to send. */
  first: readonly string[],
  tail: number,
  io: { send: (line: string) => Promise<void>; stopped: () => boolean; onAbort: (wake: () => void) => void },
  which: ConsoleCopy = 'running',
): Promise<void> {
  let anchor = first.slice(-ANCHOR_LINES);
  let count = first.length;
  for (const line of first.slice(Math.max(0, first.length - tail))) await io.send(line);
  let wake: (() => void) | null = null;
  io.onAbort(() => wake?.());
  const drillStartedAt = machine.runtime.test?.startedAt;
  while (!io.stopped()) {
    await new Promise<void>((resolve) => {
      wake = resolve;
      setTimeout(resolve, FOLLOW_POLL_MS);
    });
    wake = null;
    if (io.stopped()) return;
    // Read again each time: the stream ends with the machine, and a drill's with its drill (not at the next one's).
    const current = await vault.store.machines.get(machine.id);
    if (!current) return;
    if (which === 'drill' && current.runtime.test?.startedAt !== drillStartedAt) return;
    const now = await consoleOf(vault, current, undefined, which).catch((error: unknown) => {
      if (error instanceof HavenError && error.code === 'not_found') return null;
      // The host is away (restarting, reconnecting): keep the stream and read again once it is back.
      if (error instanceof HavenError && error.code === 'unreachable') return 'away' as const;
      throw error;
    });
    if (now === null) return;
    if (now === 'away') continue;
    const fresh = linesAfter(anchor, count, now.lines);
    for (const line of fresh) await io.send(line);
    if (fresh.length > 0) anchor = [...anchor, ...fresh].slice(-ANCHOR_LINES);
    count = now.lines.length;
  }
}
