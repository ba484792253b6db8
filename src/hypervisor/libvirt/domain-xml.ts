/**
 * libvirt domain XML, both ways: a domain's XML read into the typed
 * description the host's inventory reports, and the XML for a Haven machine
 * definition (TCG, NBD disks, bridge NICs, serial console to a file).
 */
import { HavenError } from '../../errors/index.ts';
import type { DomainBoot, DomainDescription, DomainDisk, DomainNic } from '../hypervisor.ts';
import { type StoredDefinition, staticIpWords } from '../machine-definition.ts';
import { parseNbdUri } from '../nbd-uri.ts';
import { isolatedNetworkName } from './libvirt-isolated-networks.ts';
import { childOf, childrenOf, parseXml, writeXml, type XmlElement, type XmlNode } from './xml.ts';

/** The virtio serial port name libvirt talks to the QEMU guest agent on. */
export const GUEST_AGENT_CHANNEL = 'org.qemu.guest_agent.0';

/** A domain's definition as read from its XML: everything but what only the running host knows. */
export type DomainDefinition = Omit<DomainDescription, 'state'>;

const UNIT_BYTES: Record<string, number> = {
  b: 1,
  bytes: 1,
  kb: 1e3,
  k: 1024,
  kib: 1024,
  mb: 1e6,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  gb: 1e9,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  tb: 1e12,
  t: 1024 ** 4,
  tib: 1024 ** 4,
};

function memoryMiB(element: XmlElement | undefined): number {
  if (!element) return 0;
  const unit = (element.attributes.unit ?? 'KiB').toLowerCase();
  return Math.round((Number(element.text) * (UNIT_BYTES[unit] ?? 1024)) / 1024 ** 2);
}

function readDisk(disk: XmlElement): DomainDisk {
  const type = disk.attributes.type ?? 'file';
  const source = childOf(disk, 'source');
  const target = childOf(disk, 'target');
  let described: DomainDisk['source'];
  if (!source) described = { type: 'none' };
  else if (type === 'file' && source.attributes.file)
    described = { type: 'file', path: source.attributes.file };
  else if (type === 'block' && source.attributes.dev)
    described = { type: 'block', path: source.attributes.dev };
  else if (type === 'network' && source.attributes.protocol === 'nbd') {
    const host = childOf(source, 'host');
    const unix = host?.attributes.transport === 'unix';
    described = {
      type: 'nbd',
      export: source.attributes.name ?? '',
      socket: unix ? (host?.attributes.socket ?? null) : null,
      host: unix ? null : (host?.attributes.name ?? null),
      port: unix || !host?.attributes.port ? null : Number(host.attributes.port),
    };
  } else {
    const what = Object.entries(source.attributes)
      .map(([key, value]) => `${key}=${value}`)
      .join(' ');
    described = { type: 'other', description: `${type}: ${what}` };
  }
  return {
    target: target?.attributes.dev ?? '',
    bus: target?.attributes.bus ?? '',
    device: disk.attributes.device ?? 'disk',
    source: described,
    format: childOf(disk, 'driver')?.attributes.type ?? null,
    virtualSizeBytes: null,
    snapshots: null,
    readOnly: childOf(disk, 'readonly') !== undefined,
  };
}

function readNic(nic: XmlElement): DomainNic {
  const source = childOf(nic, 'source')?.attributes ?? {};
  return {
    mac: childOf(nic, 'mac')?.attributes.address?.toLowerCase() ?? null,
    // A running domain's NIC on a libvirt network names its bridge too: the network is what mappings use.
    network:
      (nic.attributes.type === 'network' ? source.network : undefined) ??
      source.bridge ??
      source.network ??
      source.dev ??
      null,
    type: nic.attributes.type ?? 'unknown',
    model: childOf(nic, 'model')?.attributes.type ?? null,
  };
}

function readBoot(os: XmlElement | undefined): DomainBoot {
  const kernel = childOf(os, 'kernel')?.text;
  if (kernel) {
    return {
      kind: 'kernel',
      kernel,
      initrd: childOf(os, 'initrd')?.text || null,
      cmdline: childOf(os, 'cmdline')?.text ?? '',
    };
  }
  const devices = childrenOf(os, 'boot').map((boot) => boot.attributes.dev ?? '');
  return { kind: 'devices', devices: devices.length > 0 ? devices : ['hd'] };
}

/** A disk of a domain's XML found by its serial (Haven's disk id), with the copy job that mirrors it, if any. */
export interface SerialDisk {
  disk: DomainDisk;
  /** The image a block copy job of this disk writes to (libvirt's `<mirror>`), null when none runs. */
  mirrorFile: string | null;
}

/** The disk whose `<serial>` is `serial` in a domain's XML, or undefined. */
export function diskBySerial(xml: string, serial: string): SerialDisk | undefined {
  const element = childrenOf(childOf(parseXml(xml), 'devices'), 'disk').find(
    (disk) => childOf(disk, 'serial')?.text === serial,
  );
  if (!element) return undefined;
  const mirror = childOf(element, 'mirror');
  return {
    disk: readDisk(element),
    mirrorFile: mirror ? (childOf(mirror, 'source')?.attributes.file ?? mirror.attributes.file ?? '') : null,
  };
}

/**
 * A domain's XML with the disk whose serial is `serial` reading the qcow2
 * image `image` instead (what a restart must open after a live move).
 */
export function withDiskOnImage(xml: string, serial: string, image: string): string {
  const toNode = (element: XmlElement): XmlNode => {
    if (element.name === 'disk' && childOf(element, 'serial')?.text === serial) {
      return {
        name: 'disk',
        attributes: { ...element.attributes, type: 'file' },
        content: element.children
          .filter((child) => child.name !== 'backingStore')
          .map((child) =>
            child.name === 'source'
              ? { name: 'source', attributes: { file: image } }
              : child.name === 'driver'
                ? { name: 'driver', attributes: { ...child.attributes, type: 'qcow2' } }
                : toNode(child),
          ),
      };
    }
    return {
      name: element.name,
      attributes: element.attributes,
      content: element.children.length > 0 ? element.children.map(toNode) : element.text,
    };
  };
  return writeXml(toNode(parseXml(xml)));
}

/** Reads `virsh dumpxml` output. */
export function parseDomainXml(xml: string): DomainDefinition {
  const domain = parseXml(xml);
  if (domain.name !== 'domain') {
    throw new HavenError('internal', `expected a libvirt <domain>, got <${domain.name}>`, {});
  }
  const devices = childOf(domain, 'devices');
  const consoles = [...childrenOf(devices, 'serial'), ...childrenOf(devices, 'console')];
  const consoleFile =
    consoles
      .filter((device) => device.attributes.type === 'file')
      .map((device) => childOf(device, 'source')?.attributes.path)
      .find((path) => path !== undefined) ?? null;
  return {
    name: childOf(domain, 'name')?.text ?? '',
    uuid: childOf(domain, 'uuid')?.text ?? null,
    cpus: Number(childOf(domain, 'vcpu')?.text ?? 1),
    memoryMiB: memoryMiB(childOf(domain, 'memory')),
    disks: childrenOf(devices, 'disk').map(readDisk),
    nics: childrenOf(devices, 'interface').map(readNic),
    boot: readBoot(childOf(domain, 'os')),
    consoleFile,
    guestAgent: childrenOf(devices, 'channel').some(
      (channel) =>
        channel.attributes.type === 'unix' &&
        childOf(channel, 'target')?.attributes.type === 'virtio' &&
        childOf(channel, 'target')?.attributes.name === GUEST_AGENT_CHANNEL,
    ),
  };
}

/** The NBD `<source>` of a disk served over `nbdUri`. */
export function nbdSource(nbdUri: string): XmlNode {
  const target = parseNbdUri(nbdUri);
  const host: XmlNode =
    target.server.type === 'unix'
      ? { name: 'host', attributes: { transport: 'unix', socket: target.server.path } }
      : { name: 'host', attributes: { name: target.server.host, port: target.server.port } };
  return {
    name: 'source',
    attributes: { protocol: 'nbd', name: target.export || undefined },
    // No <reconnect delay>: libvirt 9.0 drops it for NBD sources, so unlike the QEMU driver's machines a
    // restarted disk service fails the guest's in-flight I/O (see docs/architecture.md).
    content: [host],
  };
}

/**
 * The domain XML for a (validated) Haven machine: TCG or KVM, its disks the
 * NBD exports of its definition with their disk ids as serials, NICs in
 * Linux bridges (isolated ones on Haven's isolated libvirt networks), the
 * serial console written to `consoleFile`.
 */
export function domainXml(
  machine: StoredDefinition,
  options: { consoleFile: string; domainType: 'qemu' | 'kvm' },
): string {
  const os: XmlNode[] = [{ name: 'type', attributes: { arch: 'x86_64' }, content: 'hvm' }];
  if (machine.boot) {
    os.push({ name: 'kernel', content: machine.boot.kernel });
    if (machine.boot.initrd) os.push({ name: 'initrd', content: machine.boot.initrd });
    const words = [machine.boot.cmdline.trim(), ...staticIpWords(machine.nics)].filter(Boolean);
    os.push({ name: 'cmdline', content: words.join(' ') });
  } else {
    os.push({ name: 'boot', attributes: { dev: 'hd' } });
  }
  const disks: XmlNode[] = machine.disks.map((disk, index) => ({
    name: 'disk',
    attributes: { type: 'network', device: 'disk' },
    content: [
      { name: 'driver', attributes: { name: 'qemu', type: 'raw', cache: 'none' } },
      nbdSource(disk.nbdUri),
      { name: 'target', attributes: { dev: `vd${String.fromCharCode(97 + index)}`, bus: 'virtio' } },
      { name: 'serial', content: disk.diskId },
    ],
  }));
  // An isolated NIC is on the libvirt network Haven makes for that test network, never a bridge of the host's.
  const nics: XmlNode[] = machine.nics.map((nic) => ({
    name: 'interface',
    attributes: { type: nic.isolated ? 'network' : 'bridge' },
    content: [
      { name: 'mac', attributes: { address: nic.mac } },
      {
        name: 'source',
        attributes: nic.isolated ? { network: isolatedNetworkName(nic.network) } : { bridge: nic.network },
      },
      { name: 'model', attributes: { type: 'virtio' } },
    ],
  }));
  return writeXml({
    name: 'domain',
    attributes: { type: options.domainType },
    content: [
      { name: 'name', content: machine.name },
      ...(machine.uuid ? [{ name: 'uuid', content: machine.uuid }] : []),
      { name: 'memory', attributes: { unit: 'MiB' }, content: String(machine.memoryMiB) },
      { name: 'vcpu', content: String(machine.cpus) },
      { name: 'os', content: os },
      // ACPI: what a clean shutdown (virsh shutdown) asks the guest through.
      { name: 'features', content: [{ name: 'acpi' }] },
      { name: 'on_poweroff', content: 'destroy' },
      // As the QEMU driver's -no-reboot: a guest that panics (panic=-1) stops instead of looping.
      { name: 'on_reboot', content: 'destroy' },
      { name: 'on_crash', content: 'destroy' },
      {
        name: 'devices',
        content: [
          ...disks,
          ...nics,
          {
            name: 'serial',
            attributes: { type: 'file' },
            content: [
              { name: 'source', attributes: { path: options.consoleFile } },
              { name: 'target', attributes: { port: 0 } },
            ],
          },
          // /dev/urandom can stall for a long time after boot without an entropy source.
          {
            name: 'rng',
            attributes: { model: 'virtio' },
            content: [{ name: 'backend', attributes: { model: 'random' }, content: '/dev/urandom' }],
          },
          { name: 'memballoon', attributes: { model: 'none' } },
        ],
      },
    ],
  });
}
