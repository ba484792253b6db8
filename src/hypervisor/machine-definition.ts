import { createHash } from 'node:crypto';
import type { IpConfig } from '../domain/index.ts';
import { HavenError } from '../errors/index.ts';
import type { MachineDefinition, MachineNic } from './hypervisor.ts';
import { parseNbdUri } from './nbd-uri.ts';

/** A definition with every NIC's MAC decided, as the driver stores it. */
export interface StoredNic extends MachineNic {
  mac: string;
}
export interface StoredDefinition extends MachineDefinition {
  nics: StoredNic[];
}

// Names become directory names, so no separators and no leading dot.
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
// virtio-blk serial numbers hold at most 20 bytes; the guest sees the disk id there.
const DISK_ID = /^[A-Za-z0-9_-]{1,20}$/;
// Linux interface names: at most 15 bytes.
const NETWORK = /^[A-Za-z0-9][A-Za-z0-9_-]{0,14}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export const MAX_CPUS = 64;
export const MIN_MEMORY_MIB = 128;
export const MAX_NICS = 8;

function invalid(
  machine: string,
  field: string,
  message: string,
  extra: Record<string, unknown> = {},
): HavenError {
  return new HavenError('validation_failed', `machine '${machine}': ${message}`, {
    machine,
    field,
    ...extra,
  });
}

/**
 * Checks a definition and fills what the driver decides (MACs). Pure: the
 * paths in `boot` are checked for form here and for existence at start.
 */
export function validateMachineDefinition(machine: MachineDefinition): StoredDefinition {
  const name = machine?.name;
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new HavenError(
      'validation_failed',
      `machine name '${String(name)}' must be 1-63 letters, digits, '.', '_' or '-', not starting with a symbol`,
      { field: 'name' },
    );
  }
  if (!Number.isInteger(machine.cpus) || machine.cpus < 1 || machine.cpus > MAX_CPUS) {
    throw invalid(name, 'cpus', `cpus ${machine.cpus} must be an integer from 1 to ${MAX_CPUS}`);
  }
  if (
    !Number.isInteger(machine.memoryMiB) ||
    machine.memoryMiB < MIN_MEMORY_MIB ||
    machine.memoryMiB > 1 << 20
  ) {
    throw invalid(
      name,
      'memoryMiB',
      `memory ${machine.memoryMiB} MiB must be an integer from ${MIN_MEMORY_MIB} MiB to 1 TiB`,
    );
  }
  if (!Array.isArray(machine.disks) || machine.disks.length === 0) {
    throw invalid(name, 'disks', 'needs at least one disk');
  }
  const diskIds = new Set<string>();
  const disks = machine.disks.map((disk) => {
    if (typeof disk.diskId !== 'string' || !DISK_ID.test(disk.diskId)) {
      throw invalid(
        name,
        'disks.diskId',
        `disk id '${String(disk.diskId)}' must be 1-20 letters, digits, '_' or '-'`,
      );
    }
    if (diskIds.has(disk.diskId))
      throw invalid(name, 'disks.diskId', `disk id '${disk.diskId}' appears twice`);
    diskIds.add(disk.diskId);
    parseNbdUri(disk.nbdUri);
    return { diskId: disk.diskId, nbdUri: disk.nbdUri };
  });
  const nicsIn = machine.nics ?? [];
  if (!Array.isArray(nicsIn) || nicsIn.length > MAX_NICS) {
    throw invalid(name, 'nics', `at most ${MAX_NICS} NICs`);
  }
  const nics = nicsIn.map((nic, index): StoredNic => {
    if (typeof nic.network !== 'string' || !NETWORK.test(nic.network)) {
      throw invalid(
        name,
        'nics.network',
        `network '${String(nic.network)}' must be a Linux interface name (1-15 letters, digits, '_' or '-')`,
      );
    }
    const mac = nic.mac === null || nic.mac === undefined ? derivedMac(name, index) : nic.mac.toLowerCase();
    if (!MAC.test(mac) || (Number.parseInt(mac.slice(0, 2), 16) & 1) === 1) {
      throw invalid(name, 'nics.mac', `MAC '${nic.mac}' must be a unicast address like 52:54:00:12:34:56`);
    }
    const stored: StoredNic = { network: nic.network, mac, isolated: nic.isolated === true };
    if (nic.ip !== undefined) stored.ip = validateIp(name, nic.ip);
    return stored;
  });
  const macs = new Set(nics.map((nic) => nic.mac));
  if (macs.size !== nics.length) throw invalid(name, 'nics.mac', 'two NICs have the same MAC');
  const stored: StoredDefinition = { name, cpus: machine.cpus, memoryMiB: machine.memoryMiB, disks, nics };
  if (machine.uuid !== undefined) {
    if (typeof machine.uuid !== 'string' || !UUID.test(machine.uuid)) {
      throw invalid(
        name,
        'uuid',
        `UUID '${String(machine.uuid)}' must look like 0f8e7b52-3c1d-4a8e-9b6f-2d4c5e6f7a8b`,
      );
    }
    stored.uuid = machine.uuid.toLowerCase();
  }
  if (machine.boot !== undefined) {
    const { kernel, initrd, cmdline } = machine.boot;
    if (typeof kernel !== 'string' || !kernel.startsWith('/')) {
      throw invalid(name, 'boot.kernel', `kernel '${String(kernel)}' must be an absolute path`);
    }
    if (initrd !== null && (typeof initrd !== 'string' || !initrd.startsWith('/'))) {
      throw invalid(name, 'boot.initrd', `initrd '${String(initrd)}' must be an absolute path or null`);
    }
    if (typeof cmdline !== 'string' || /[\n\0]/.test(cmdline) || /(^|\s)haven\.ip\d*=/.test(cmdline)) {
      throw invalid(
        name,
        'boot.cmdline',
        'kernel command line must be one line without haven.ip= (the NICs carry the addresses)',
      );
    }
    stored.boot = { kernel, initrd, cmdline };
  }
  return stored;
}

function validateIp(machine: string, ip: IpConfig): IpConfig {
  if (ip?.mode === 'dhcp') return { mode: 'dhcp' };
  if (ip?.mode !== 'static')
    throw invalid(
      machine,
      'nics.ip',
      `IP mode '${String((ip as { mode?: unknown })?.mode)}' must be 'dhcp' or 'static'`,
    );
  const isIpv4 = (text: unknown) =>
    typeof text === 'string' && IPV4.test(text) && text.split('.').every((part) => Number(part) <= 255);
  if (!isIpv4(ip.address)) throw invalid(machine, 'nics.ip.address', `address '${ip.address}' must be IPv4`);
  if (!Number.isInteger(ip.prefixLength) || ip.prefixLength < 1 || ip.prefixLength > 32) {
    throw invalid(machine, 'nics.ip.prefixLength', `prefix length ${ip.prefixLength} must be 1-32`);
  }
  if (ip.gateway !== null && !isIpv4(ip.gateway)) {
    throw invalid(machine, 'nics.ip.gateway', `gateway '${ip.gateway}' must be IPv4 or null`);
  }
  const dns = ip.dns ?? [];
  for (const server of dns)
    if (!isIpv4(server)) throw invalid(machine, 'nics.ip.dns', `DNS server '${server}' must be IPv4`);
  return {
    mode: 'static',
    address: ip.address,
    prefixLength: ip.prefixLength,
    gateway: ip.gateway,
    dns: [...dns],
  };
}

/** A locally administered MAC (QEMU's 52:54:00 prefix) that stays the same across starts and sites. */
export function derivedMac(machine: string, index: number): string {
  const hash = createHash('sha256').update(`${machine}\0${index}`).digest();
  return ['52', '54', '00', ...[0, 1, 2].map((i) => hash[i]!.toString(16).padStart(2, '0'))].join(':');
}

/**
 * The words the kernel command line gets for the NICs' static addresses:
 * `haven.ip=ADDR/PREFIX[,GW]` for eth0 (what the Haven guest reads), then
 * `haven.ip1=`... for further NICs. DHCP NICs add nothing.
 */
export function staticIpWords(nics: readonly MachineNic[]): string[] {
  return nics.flatMap((nic, index) => {
    if (nic.ip?.mode !== 'static') return [];
    const { address, prefixLength, gateway } = nic.ip;
    return [`haven.ip${index === 0 ? '' : index}=${address}/${prefixLength}${gateway ? `,${gateway}` : ''}`];
  });
}
