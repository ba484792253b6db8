/**
 * Checks before acting (SPEC §5): are a machine's recovery settings good
 * enough to start it at the other site, may it be reprotected, does the
 * recovery host have room for its disks. Validators return every problem;
 * `assertValid` turns a non-empty list into one HavenError.
 */
import { HavenError } from '../errors/index.ts';
import type { Disk, Host, IpConfig, Machine, NicSettings } from './model.ts';
import type { Problem } from './problem.ts';

export const MIN_CPUS = 1;
export const MAX_CPUS = 64;
export const MIN_MEMORY_MIB = 128;
export const MAX_MEMORY_MIB = 1024 * 1024; // 1 TiB
export const SECTOR_BYTES = 512;
/** Seed 002: a recovery host (ASR master target) takes at most 60 disks unless configured otherwise. */
export const DEFAULT_MAX_PROTECTED_DISKS = 60;

export interface UsedAddress {
  address: string;
  machineId: string;
  machineName: string;
}

export interface RecoveryValidationContext {
  /** Network at the machine's current site -> network at the recovery site. */
  networkMapping: Record<string, string>;
  /** Networks that exist at the recovery site, when known; a target network must be one of them. */
  recoveryNetworks?: readonly string[];
  /** Static addresses already given to machines (this machine's own entries are ignored). */
  usedAddresses?: readonly UsedAddress[];
  /** The recovery host's capacity, when known. */
  hostMaxCpus?: number;
  hostMemoryMiB?: number;
}

export type MachineToValidate = Pick<Machine, 'id' | 'name' | 'disks' | 'recoverySettings'>;

const HOSTNAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** Every problem that would stop `machine` from starting at the recovery site. */
export function validateRecoverySettings(
  machine: MachineToValidate,
  context: RecoveryValidationContext,
): Problem[] {
  const problems: Problem[] = [];
  const add = (field: string, code: Problem['code'], message: string) =>
    problems.push({ field, code, message });
  const s = machine.recoverySettings;

  const name = s.targetName;
  if (name.length === 0) add('recoverySettings.targetName', 'required', 'Target name is required');
  else if (name.length > 63) {
    add('recoverySettings.targetName', 'too_long', `Target name has ${name.length} characters; at most 63`);
  } else if (!HOSTNAME.test(name)) {
    add(
      'recoverySettings.targetName',
      'invalid_format',
      `Target name '${name}' is not a host name: use lowercase letters, digits and '-', not at either end`,
    );
  }

  const maxCpus = Math.min(MAX_CPUS, context.hostMaxCpus ?? MAX_CPUS);
  if (!Number.isInteger(s.cpus))
    add('recoverySettings.cpus', 'not_integer', `CPUs must be a whole number, got ${s.cpus}`);
  else if (s.cpus < MIN_CPUS || s.cpus > MAX_CPUS) {
    add('recoverySettings.cpus', 'out_of_range', `CPUs must be ${MIN_CPUS}–${MAX_CPUS}, got ${s.cpus}`);
  } else if (s.cpus > maxCpus) {
    add(
      'recoverySettings.cpus',
      'exceeds_host',
      `The recovery host has ${maxCpus} CPUs; ${s.cpus} requested`,
    );
  }

  const mem = s.memoryMiB;
  if (!Number.isInteger(mem)) {
    add('recoverySettings.memoryMiB', 'not_multiple', `Memory must be a whole number of MiB, got ${mem}`);
  } else if (mem < MIN_MEMORY_MIB || mem > MAX_MEMORY_MIB) {
    add('recoverySettings.memoryMiB', 'out_of_range', `Memory must be 128 MiB–1 TiB, got ${mem} MiB`);
  } else if (context.hostMemoryMiB !== undefined && mem > context.hostMemoryMiB) {
    add(
      'recoverySettings.memoryMiB',
      'exceeds_host',
      `The recovery host has ${context.hostMemoryMiB} MiB of memory; ${mem} MiB requested`,
    );
  }

  const seenMacs = new Map<string, number>();
  const seenAddresses = new Map<string, number>();
  s.nics.forEach((nic, i) => {
    const at = `recoverySettings.nics[${i}]`;
    checkNetwork(nic, at, context, add);
    if (nic.mac !== null) {
      const mac = nic.mac.toLowerCase();
      if (!MAC.test(mac)) {
        add(`${at}.mac`, 'invalid_format', `MAC '${nic.mac}' is not six hex pairs separated by ':'`);
      } else if (Number.parseInt(mac.slice(0, 2), 16) & 1) {
        add(
          `${at}.mac`,
          'invalid_address',
          `MAC '${nic.mac}' is a multicast address; a NIC needs a unicast one`,
        );
      } else if (seenMacs.has(mac)) {
        add(`${at}.mac`, 'duplicate', `MAC '${nic.mac}' is also used by NIC ${seenMacs.get(mac)}`);
      } else seenMacs.set(mac, i);
    }
    if (nic.ip.mode === 'static') checkStaticIp(nic.ip, at, i, machine, context, seenAddresses, add);
  });

  if (machine.disks.length === 0)
    add('disks', 'required', `Machine '${machine.name}' has no disk to recover`);
  const seenDisks = new Set<string>();
  machine.disks.forEach((disk: Disk, i) => {
    if (seenDisks.has(disk.id)) add(`disks[${i}].id`, 'duplicate', `Disk id '${disk.id}' appears twice`);
    seenDisks.add(disk.id);
    if (!Number.isSafeInteger(disk.sizeBytes) || disk.sizeBytes <= 0) {
      add(
        `disks[${i}].sizeBytes`,
        'out_of_range',
        `Disk '${disk.id}' size must be positive, got ${disk.sizeBytes}`,
      );
    } else if (disk.sizeBytes % SECTOR_BYTES !== 0) {
      add(
        `disks[${i}].sizeBytes`,
        'not_multiple',
        `Disk '${disk.id}' size ${disk.sizeBytes} is not a multiple of ${SECTOR_BYTES} bytes`,
      );
    }
  });
  return problems;
}

type Add = (field: string, code: Problem['code'], message: string) => void;

function checkNetwork(nic: NicSettings, at: string, context: RecoveryValidationContext, add: Add): void {
  const explicit = nic.recoveryNetwork;
  if (explicit !== null && explicit.trim() === '') {
    add(
      `${at}.recoveryNetwork`,
      'required',
      'Recovery network is empty; give a name or null to use the mapping',
    );
    return;
  }
  const target = explicit ?? context.networkMapping[nic.network];
  if (target === undefined) {
    add(
      `${at}.network`,
      'not_mapped',
      `Network '${nic.network}' has no mapping at the recovery site; map it or set recoveryNetwork`,
    );
    return;
  }
  if (context.recoveryNetworks && !context.recoveryNetworks.includes(target)) {
    add(
      explicit !== null ? `${at}.recoveryNetwork` : `${at}.network`,
      'unknown_network',
      `Network '${target}' does not exist at the recovery site (known: ${context.recoveryNetworks.join(', ') || 'none'})`,
    );
  }
}

function checkStaticIp(
  ip: Extract<IpConfig, { mode: 'static' }>,
  at: string,
  index: number,
  machine: MachineToValidate,
  context: RecoveryValidationContext,
  seen: Map<string, number>,
  add: Add,
): void {
  const address = parseIp(ip.address);
  if (address === null) {
    add(`${at}.ip.address`, 'invalid_format', `'${ip.address}' is not an IPv4 or IPv6 address`);
  }
  const bits = address?.length === 16 ? 128 : 32;
  const prefixOk = Number.isInteger(ip.prefixLength) && ip.prefixLength >= 1 && ip.prefixLength <= bits;
  if (!prefixOk) {
    add(`${at}.ip.prefixLength`, 'out_of_range', `Prefix length must be 1–${bits}, got ${ip.prefixLength}`);
  }
  ip.dns.forEach((server, d) => {
    if (parseIp(server) === null)
      add(`${at}.ip.dns[${d}]`, 'invalid_format', `DNS server '${server}' is not an IP address`);
  });
  if (address === null) return;

  const special = specialUse(address);
  if (special)
    add(`${at}.ip.address`, 'invalid_address', `'${ip.address}' is ${special}, not a host address`);
  else if (prefixOk && isNetworkOrBroadcast(address, ip.prefixLength)) {
    add(
      `${at}.ip.address`,
      'invalid_address',
      `'${ip.address}' is the network or broadcast address of /${ip.prefixLength}`,
    );
  }

  const key = address.join('.');
  const other = (context.usedAddresses ?? []).find(
    (u) => u.machineId !== machine.id && parseIp(u.address)?.join('.') === key,
  );
  if (other) {
    add(
      `${at}.ip.address`,
      'address_in_use',
      `${ip.address} is already used by machine '${other.machineName}'`,
    );
  } else if (seen.has(key)) {
    add(`${at}.ip.address`, 'duplicate', `${ip.address} is also given to NIC ${seen.get(key)}`);
  } else seen.set(key, index);

  if (ip.gateway === null) return;
  const gateway = parseIp(ip.gateway);
  if (gateway === null) {
    add(`${at}.ip.gateway`, 'invalid_format', `Gateway '${ip.gateway}' is not an IP address`);
  } else if (gateway.length !== address.length) {
    add(`${at}.ip.gateway`, 'family_mismatch', `Gateway ${ip.gateway} is not in the address's IP family`);
  } else if (prefixOk && !sameSubnet(address, gateway, ip.prefixLength)) {
    add(
      `${at}.ip.gateway`,
      'outside_subnet',
      `Gateway ${ip.gateway} is outside ${ip.address}/${ip.prefixLength}; it must be on the machine's subnet`,
    );
  } else if (gateway.join('.') === key) {
    add(`${at}.ip.gateway`, 'invalid_address', `Gateway ${ip.gateway} is the machine's own address`);
  }
}

/** Bytes of an IPv4 (4) or IPv6 (16) address in text form, or null. No zone ids, no leading-zero octets. */
export function parseIp(text: string): number[] | null {
  return parseIPv4(text) ?? parseIPv6(text);
}

function parseIPv4(text: string): number[] | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const bytes: number[] = [];
  for (const p of parts) {
    // Leading zeros are refused: some tools read them as octal.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    bytes.push(n);
  }
  return bytes;
}

function parseIPv6(text: string): number[] | null {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups = (half: string): number[] | null => {
    if (half === '') return [];
    const out: number[] = [];
    const parts = half.split(':');
    for (const [i, p] of parts.entries()) {
      if (i === parts.length - 1 && p.includes('.')) {
        const v4 = parseIPv4(p);
        if (v4 === null) return null;
        out.push(...v4);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(p)) {
        const n = Number.parseInt(p, 16);
        out.push(n >> 8, n & 0xff);
      } else return null;
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (head === null || tail === null) return null;
  // An embedded IPv4 may only end the address.
  if (halves.length === 2 && halves[0]!.includes('.')) return null;
  const missing = 16 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 2) return null;
  return [...head, ...new Array<number>(missing).fill(0), ...tail];
}

function bitAt(bytes: number[], i: number): number {
  return (bytes[i >> 3]! >> (7 - (i & 7))) & 1;
}

function sameSubnet(a: number[], b: number[], prefix: number): boolean {
  for (let i = 0; i < prefix; i++) if (bitAt(a, i) !== bitAt(b, i)) return false;
  return true;
}

/** IPv4 subnets of /30 or wider reserve their all-zeros and all-ones host parts. */
function isNetworkOrBroadcast(a: number[], prefix: number): boolean {
  if (a.length !== 4 || prefix > 30) return false;
  const host = Array.from({ length: 32 - prefix }, (_, i) => bitAt(a, prefix + i));
  return host.every((b) => b === 0) || host.every((b) => b === 1);
}

function specialUse(a: number[]): string | null {
  if (a.every((b) => b === 0)) return 'the unspecified address';
  if (a.length === 4) {
    if (a[0] === 127) return 'a loopback address';
    if (a[0]! >= 224) return a[0]! < 240 ? 'a multicast address' : 'a reserved address';
    if (a[0] === 0) return 'a reserved address';
    return null;
  }
  if (a.slice(0, 15).every((b) => b === 0) && a[15] === 1) return 'the loopback address';
  if (a[0] === 0xff) return 'a multicast address';
  return null;
}

/** Reprotect replicates the disks back; hypervisor snapshots would fork what is replicated (SPEC §5). */
export function validateForReprotect(machine: Pick<Machine, 'id' | 'name' | 'disks'>): Problem[] {
  return machine.disks.flatMap((disk, i): Problem[] =>
    disk.hasSnapshots
      ? [
          {
            field: `disks[${i}]`,
            code: 'has_snapshots',
            message: `Disk '${disk.id}' of machine '${machine.name}' has snapshots; delete or merge them before reprotect`,
          },
        ]
      : [],
  );
}

/**
 * Failback goes to the original machine (only differing blocks move) or to an
 * alternate location where a new machine is created (SPEC §2 step 6, §5).
 */
export function validateFailbackTarget(
  machine: Pick<Machine, 'id' | 'name' | 'originalExists'>,
  alternateHostId: string | null = null,
): Problem[] {
  if (machine.originalExists || (alternateHostId !== null && alternateHostId !== '')) return [];
  return [
    {
      field: 'alternateHostId',
      code: 'required',
      message: `The original machine of '${machine.name}' is gone; failback needs an alternate location (a primary-site host)`,
    },
  ];
}

/**
 * Refuse to place `adding` more protected disks on a recovery host that holds
 * `currentCount` already, beyond its limit (DEFAULT_MAX_PROTECTED_DISKS unless set).
 */
export function checkDiskLimit(
  host: Pick<Host, 'id' | 'name'> & { maxProtectedDisks?: number | null },
  currentCount: number,
  adding: number,
): void {
  const limit = host.maxProtectedDisks ?? DEFAULT_MAX_PROTECTED_DISKS;
  if (!Number.isInteger(adding) || adding < 0 || !Number.isInteger(currentCount) || currentCount < 0) {
    throw new HavenError(
      'bad_request',
      `Disk counts must be whole numbers ≥ 0 (current ${currentCount}, adding ${adding})`,
      {
        hostId: host.id,
        currentCount,
        adding,
      },
    );
  }
  if (currentCount + adding > limit) {
    throw new HavenError(
      'limit_exceeded',
      `Recovery host '${host.name}' holds ${currentCount} protected disks; adding ${adding} would exceed its limit of ${limit}`,
      { hostId: host.id, hostName: host.name, currentCount, adding, limit },
    );
  }
}

/** Throw one 'validation_failed' error carrying every problem, or return if there is none. */
export function assertValid(problems: readonly Problem[], machine: Pick<Machine, 'id' | 'name'>): void {
  if (problems.length === 0) return;
  const list = problems.map((p) => `${p.field}: ${p.message}`).join('; ');
  const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
  throw new HavenError('validation_failed', `Machine '${machine.name}' is not ready (${count}): ${list}`, {
    machineId: machine.id,
    problems,
  });
}
