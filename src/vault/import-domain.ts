import { isoNow } from '../clock/index.ts';
import type { Disk, Host, Machine, NicSettings } from '../domain/model.ts';
import { HavenError } from '../errors/index.ts';
import type { DomainDescription, HypervisorInventory } from '../hypervisor/hypervisor.ts';
import { hostServices } from './host-call.ts';
import { newMachine } from './new-machine.ts';
import type { VaultContext } from './vault-context.ts';

export interface ImportDomainRequest {
  hostId: string;
  domain: string;
  /** Haven's name for the machine; default the domain's name. */
  name?: string;
  osFamily?: Machine['osFamily'];
}

export interface HostDomains extends HypervisorInventory {
  hostId: string;
  /** 'host': asked of the host now; 'vault': what it last reported (it is not connected). */
  source: 'host' | 'vault';
  reportedAt: string;
}

/** The host's hypervisor inventory: asked now (and kept) when it is connected, else the last one it reported. */
export async function hostDomains(vault: VaultContext, host: Host): Promise<HostDomains> {
  if (vault.hosts.isConnected(host.id)) {
    const inventory = await liveInventory(vault, host);
    const reportedAt = isoNow(vault.clock);
    await vault.store.hosts.saveHypervisorInventory(host.id, inventory, reportedAt);
    return { hostId: host.id, source: 'host', reportedAt, ...inventory };
  }
  const stored = await vault.store.hosts.hypervisorInventory(host.id);
  if (!stored) {
    throw new HavenError(
      'unreachable',
      `Host '${host.name}' is ${host.status}, not connected, and has never reported its domains`,
      { hostId: host.id, status: host.status },
    );
  }
  return { hostId: host.id, source: 'vault', reportedAt: stored.reportedAt, ...stored.inventory };
}

/** Asked of the host now: an import must see the domain as it is. */
async function liveInventory(vault: VaultContext, host: Host, name?: string): Promise<HypervisorInventory> {
  if (!vault.hosts.isConnected(host.id)) {
    throw new HavenError(
      'unreachable',
      `Host '${host.name}' is ${host.status}, not connected: its domains cannot be read now`,
      { hostId: host.id, status: host.status },
    );
  }
  return hostServices(vault, host.id).hypervisor.inventory(name === undefined ? {} : { name });
}

/**
 * Registers a libvirt domain as an unprotected machine: its disks discovered
 * from the domain (image files or block devices with their sizes and formats),
 * its recovery settings derived from it (CPUs, memory, NICs on their networks,
 * kernel boot). Refuses at the request, naming the field, what cannot be imported.
 */
export async function importDomain(vault: VaultContext, request: ImportDomainRequest): Promise<Machine> {
  const { store } = vault;
  const host = (await store.hosts.get(request.hostId)) ?? (await store.hosts.getByName(request.hostId));
  if (!host) {
    throw new HavenError('bad_request', `hostId: host '${request.hostId}' does not exist`, {
      field: 'hostId',
    });
  }
  if (!host.capabilities.includes('hypervisor:libvirt')) {
    throw new HavenError(
      'bad_request',
      `hostId: host '${host.name}' does not drive libvirt (its agent reports: ${host.capabilities.join(', ') || 'nothing'}); run it with haven host --libvirt URI`,
      { field: 'hostId', hostId: host.id },
    );
  }
  const inventory = await liveInventory(vault, host, request.domain);
  const domain = inventory.domains[0];
  if (!domain) {
    throw new HavenError(
      'bad_request',
      `domain: host '${host.name}' has no libvirt domain '${request.domain}'`,
      {
        field: 'domain',
        hostId: host.id,
      },
    );
  }
  const machines = await store.machines.list();
  const already = machines.find(
    (m) =>
      m.importedFrom &&
      m.primaryHostId === host.id &&
      (domain.uuid ? m.importedFrom.uuid === domain.uuid : m.importedFrom.domain === domain.name),
  );
  if (already) {
    throw new HavenError(
      'conflict',
      `domain: domain '${domain.name}' of host '${host.name}' is already imported as machine '${already.name}'`,
      { field: 'domain', machineId: already.id, machineName: already.name },
    );
  }
  const name = request.name ?? domain.name;
  if (machines.some((m) => m.name === name)) {
    throw new HavenError('conflict', `name: a machine named '${name}' already exists; pass another name`, {
      field: 'name',
    });
  }
  const now = isoNow(vault.clock);
  const machine = newMachine(
    {
      name,
      osFamily: request.osFamily ?? 'linux',
      disks: discoveredDisks(host, domain),
      recoverySettings: {
        targetName: name,
        cpus: domain.cpus,
        memoryMiB: domain.memoryMiB,
        nics: domain.nics.map(
          (nic): NicSettings => ({
            network: nic.network ?? nic.type,
            recoveryNetwork: null,
            mac: nic.mac,
            ip: { mode: 'dhcp' },
          }),
        ),
        boot:
          domain.boot.kind === 'kernel'
            ? { kernel: domain.boot.kernel, initrd: domain.boot.initrd, cmdline: domain.boot.cmdline }
            : null,
      },
      importedFrom: {
        driver: 'libvirt',
        uri: inventory.uri ?? '',
        domain: domain.name,
        uuid: domain.uuid,
        importedAt: now,
      },
    },
    host.id,
    now,
  );
  await store.machines.create(machine);
  return machine;
}

/** The domain's disks (CD-ROMs and floppies are not data): image files or block devices whose size is known. */
function discoveredDisks(host: Host, domain: DomainDescription): Disk[] {
  const disks = domain.disks.filter((disk) => disk.device === 'disk' || disk.device === 'lun');
  if (disks.length === 0) {
    throw new HavenError(
      'bad_request',
      `domain: domain '${domain.name}' of host '${host.name}' has no disk`,
      {
        field: 'domain',
      },
    );
  }
  return disks.map((disk) => {
    const refuse = (why: string) =>
      new HavenError('bad_request', `domain: disk ${disk.target} of domain '${domain.name}' ${why}`, {
        field: 'domain',
        disk: disk.target,
      });
    if (disk.source.type !== 'file' && disk.source.type !== 'block') {
      throw refuse(`is a ${disk.source.type} disk; Haven imports disks on image files or block devices`);
    }
    if (disk.virtualSizeBytes === null) {
      throw refuse(
        `(${disk.source.path}): its size could not be read on host '${host.name}' (qemu-img info)`,
      );
    }
    return {
      id: disk.target,
      sizeBytes: disk.virtualSizeBytes,
      source: disk.source.path,
      hasSnapshots: (disk.snapshots ?? 0) > 0,
      fromDomain: { target: disk.target, bus: disk.bus, format: disk.format },
    };
  });
}
