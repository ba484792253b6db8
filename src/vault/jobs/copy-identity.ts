/**
 * Who a machine's copy (failover or drill) is on its host's hypervisor: a
 * name, a UUID and MAC addresses of its own. Both sites may share one
 * libvirtd (`haven up --libvirt`), where the source domain, fenced but still
 * defined, keeps its name, UUID and MACs: the copy must never take them, nor
 * start the source in its place.
 */
import { createHash } from 'node:crypto';
import { HavenError } from '../../errors/index.ts';
import type { HypervisorInventory, MachineNic } from '../../host/host-services.ts';

export interface CopyIdentity {
  name: string;
  /** The copy's own UUID, derived from the machine and the name (so a retried step finds its domain again). */
  uuid: string;
  nics: MachineNic[];
}

/** Names tried after the wanted one is taken by a domain that is not the copy's. */
const MAX_NAMES = 10;

/** A stable UUID (version 4 layout) for the copy named `name` of machine `machineId`. */
export function copyUuid(machineId: string, name: string): string {
  const hex = createHash('sha256').update(`haven-copy\0${machineId}\0${name}`).digest('hex');
  const variant = ((Number.parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/**
 * The copy's identity at a hypervisor holding `inventory`: `wanted` when it
 * is free or already the copy's (its UUID; drivers without UUIDs name only
 * Haven's own machines), else `wanted-recovered`, `wanted-recovered-2`…; each
 * NIC keeps its MAC unless another domain there has it, when the driver
 * derives one from the copy's name instead.
 */
export function copyIdentity(
  machineId: string,
  wanted: string,
  nics: MachineNic[],
  inventory: HypervisorInventory,
): CopyIdentity {
  const candidates = [wanted, `${wanted}-recovered`];
  for (let n = 2; candidates.length < MAX_NAMES; n++) candidates.push(`${wanted}-recovered-${n}`);
  const name = candidates.find((candidate) => {
    const domain = inventory.domains.find((d) => d.name === candidate);
    return !domain || domain.uuid === null || domain.uuid === copyUuid(machineId, candidate);
  });
  if (!name) {
    throw new HavenError(
      'conflict',
      `every name for the copy ('${candidates[0]}' … '${candidates.at(-1)}') is taken by another domain at its host; set recoverySettings.targetName to a free one`,
      { field: 'recoverySettings.targetName', taken: candidates },
    );
  }
  const others = new Set(
    inventory.domains
      .filter((d) => d.name !== name)
      .flatMap((d) => d.nics.map((nic) => nic.mac?.toLowerCase()))
      .filter((mac) => mac !== undefined),
  );
  return {
    name,
    uuid: copyUuid(machineId, name),
    nics: nics.map((nic) => (nic.mac && others.has(nic.mac.toLowerCase()) ? { ...nic, mac: null } : nic)),
  };
}
