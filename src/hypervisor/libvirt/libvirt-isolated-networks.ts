/**
 * Isolated (test) networks for the libvirt driver: a libvirt network with no
 * `<forward>` and no `<ip>` (libvirt's isolated mode, no dnsmasq), one per
 * Haven test network name, created when a drill's domain is defined or
 * started and removed once no domain defined at the host uses it.
 *
 * Its bridge lives in the host's namespace, without an address. Linux would
 * still answer ARP for the host's other addresses (a production bridge's
 * among them) on it and accept IP sent to them (the weak host model), so
 * Haven switches that off on the bridge (`arp_ignore` 8, strict `rp_filter`
 * with no route back through it, `forwarding` 0; libvirt already disables
 * IPv6 there) and checks it before a domain starts: the drill's machines see
 * each other and nothing else, as on the QEMU driver's namespaced bridges.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HavenError } from '../../errors/index.ts';
import { isolatedNamespace } from '../bridge-networks.ts';
import type { Virsh } from './virsh.ts';
import { childOf, childrenOf, parseXml, writeXml } from './xml.ts';

/** The `<metadata>` element that marks a libvirt network as one Haven made (and may remove). */
const MARK = 'haven:isolated-network';
const MARK_NS = 'https://haven.invalid/libvirt/isolated-network/1';

/** Kernel settings of an isolated network's bridge, and the values it must have. */
const BRIDGE_SETTINGS: ReadonlyArray<{ key: string; value: string; why: string }> = [
  { key: 'ipv4/conf/%/arp_ignore', value: '8', why: 'answer no ARP for any host address' },
  { key: 'ipv4/conf/%/rp_filter', value: '1', why: 'drop IP with no route back through the bridge' },
  { key: 'ipv4/conf/%/forwarding', value: '0', why: 'route nothing from it' },
  { key: 'ipv6/conf/%/disable_ipv6', value: '1', why: 'no IPv6 on the host side' },
];

/**
 * The libvirt network of Haven's isolated network `network` at a host: the
 * same name as the QEMU driver's namespace for it, one name per test network.
 */
export function isolatedNetworkName(network: string): string {
  return isolatedNamespace(network);
}

/** Its bridge: short enough for Linux (15 characters), never a production bridge's name. */
export function isolatedBridgeName(libvirtNetwork: string): string {
  return `hvt${createHash('sha256').update(libvirtNetwork).digest('hex').slice(0, 12)}`;
}

/** The definition Haven gives an isolated network: no forward, no address, no DHCP. */
export function isolatedNetworkXml(libvirtNetwork: string): string {
  return writeXml({
    name: 'network',
    content: [
      { name: 'name', content: libvirtNetwork },
      {
        name: 'metadata',
        content: [{ name: MARK, attributes: { 'xmlns:haven': MARK_NS }, content: 'isolated' }],
      },
      { name: 'bridge', attributes: { name: isolatedBridgeName(libvirtNetwork), stp: 'off' } },
    ],
  });
}

/** What a network's stored definition says about it, as far as isolation goes. */
export interface NetworkDefinition {
  name: string;
  /** Made by Haven (its metadata mark). */
  haven: boolean;
  bridge: string | null;
  /** libvirt's forward mode (nat, route, bridge...), null when it has none (isolated). */
  forward: string | null;
  addresses: number;
}

export function parseNetworkXml(xml: string): NetworkDefinition {
  const network = parseXml(xml);
  return {
    name: childOf(network, 'name')?.text ?? '',
    haven: childOf(childOf(network, 'metadata'), MARK) !== undefined,
    bridge: childOf(network, 'bridge')?.attributes.name ?? null,
    forward: childOf(network, 'forward') ? (childOf(network, 'forward')?.attributes.mode ?? 'nat') : null,
    addresses: childrenOf(network, 'ip').length,
  };
}

/** Why a network cannot carry a drill, or null when it is an isolated network Haven made. */
function notIsolated(definition: NetworkDefinition): string | null {
  if (!definition.haven) return 'it was not made by Haven';
  if (definition.forward !== null) return `it forwards (mode ${definition.forward})`;
  if (definition.addresses > 0) return 'it gives the host an address on it';
  if (definition.bridge !== isolatedBridgeName(definition.name))
    return `its bridge is ${definition.bridge}, not ${isolatedBridgeName(definition.name)}`;
  return null;
}

export interface IsolatedNetworksOptions {
  /** Where the kernel's network settings are (default /proc/sys/net); the bridge must be on this host. */
  sysctlDir?: string;
}

/**
 * The isolated networks of one libvirt connection. Several drivers may share
 * a libvirtd (`haven up`), so what is in use is always asked of libvirt:
 * a domain is defined before its network is made, and a network is removed
 * only when no defined domain names it.
 */
export class LibvirtIsolatedNetworks {
  readonly #virsh: Virsh;
  readonly #sysctlDir: string;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(virsh: Virsh, options: IsolatedNetworksOptions = {}) {
    this.#virsh = virsh;
    this.#sysctlDir = options.sysctlDir ?? '/proc/sys/net';
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(work, work);
    this.#queue = next.catch(() => {});
    return next;
  }

  /** The network's definition, or undefined when libvirt has no network of that name. */
  async definition(libvirtNetwork: string): Promise<NetworkDefinition | undefined> {
    try {
      return parseNetworkXml(await this.#virsh.run(['net-dumpxml', '--inactive', libvirtNetwork]));
    } catch (error) {
      if (error instanceof HavenError && error.code === 'not_found') return undefined;
      throw error;
    }
  }

  /**
   * Makes sure the isolated network exists, runs, and its bridge is sealed
   * off from the host (checked, never assumed). A network of that name that
   * is not an isolated one of Haven's is refused, never used for a drill.
   */
  ensure(libvirtNetwork: string, machine: string): Promise<void> {
    return this.#serial(async () => {
      let definition = await this.definition(libvirtNetwork);
      if (!definition) {
        await this.#virsh.defineXml('net-define', isolatedNetworkXml(libvirtNetwork));
        definition = await this.definition(libvirtNetwork);
      }
      const why = definition ? notIsolated(definition) : 'libvirt did not keep its definition';
      if (why !== null || !definition?.bridge) {
        throw new HavenError(
          'conflict',
          `machine '${machine}': libvirt network '${libvirtNetwork}' cannot be its isolated test network: ${why}. Remove or rename that network, or run the drill on another test network`,
          { machine, network: libvirtNetwork },
        );
      }
      if (!(await this.#active(libvirtNetwork))) {
        await this.#virsh.run(['net-start', libvirtNetwork]).catch((error: unknown) => {
          if (!(error instanceof HavenError && /already active/i.test(error.message))) throw error;
        });
      }
      await this.#seal(definition.bridge, libvirtNetwork);
    });
  }

  /** Whether `libvirtNetwork` is an isolated network Haven made. */
  async isOurs(libvirtNetwork: string): Promise<boolean> {
    const definition = await this.definition(libvirtNetwork);
    return definition !== undefined && notIsolated(definition) === null;
  }

  /**
   * Removes every isolated network Haven made that no domain defined at this
   * libvirt names any more (after a drill ends, a failed step, a restart).
   * Networks are listed before domains: a network made meanwhile belongs to a
   * domain already defined, so it is seen in use. Returns the removed names.
   */
  release(): Promise<string[]> {
    return this.#serial(async () => {
      const ours: string[] = [];
      for (const name of await this.#names(['net-list', '--all', '--name'])) {
        if (await this.isOurs(name)) ours.push(name);
      }
      if (ours.length === 0) return [];
      const used = await this.#usedByDomains();
      const removed: string[] = [];
      for (const name of ours.filter((n) => !used.has(n))) {
        if (await this.#active(name)) await this.#virsh.run(['net-destroy', name]).catch(ignoreGone);
        await this.#virsh.run(['net-undefine', name]).catch(ignoreGone);
        removed.push(name);
      }
      return removed;
    });
  }

  async #names(args: string[]): Promise<string[]> {
    return (await this.#virsh.run(args))
      .split('\n')
      .map((line) => line.trim())
      .filter(Boolean);
  }

  async #active(libvirtNetwork: string): Promise<boolean> {
    const info = await this.#virsh.run(['net-info', libvirtNetwork]);
    return /^Active:\s+yes/m.test(info);
  }

  /** libvirt networks the domains defined here (running or not) connect to. */
  async #usedByDomains(): Promise<Set<string>> {
    const used = new Set<string>();
    for (const domain of await this.#names(['list', '--all', '--name'])) {
      const xml = await this.#virsh.run(['dumpxml', '--inactive', domain], { domain }).catch((error) => {
        if (error instanceof HavenError && error.code === 'not_found') return null;
        throw error;
      });
      if (xml === null) continue;
      for (const nic of childrenOf(childOf(parseXml(xml), 'devices'), 'interface')) {
        const network = nic.attributes.type === 'network' ? childOf(nic, 'source')?.attributes.network : null;
        if (network) used.add(network);
      }
    }
    return used;
  }

  /** Sets the bridge's kernel settings and reads them back; a bridge that is not on this host fails. */
  async #seal(bridge: string, libvirtNetwork: string): Promise<void> {
    for (const setting of BRIDGE_SETTINGS) {
      const path = join(this.#sysctlDir, setting.key.replace('%', bridge));
      try {
        if ((await readFile(path, 'utf8')).trim() !== setting.value) await writeFile(path, setting.value);
        const now = (await readFile(path, 'utf8')).trim();
        if (now !== setting.value) throw new Error(`it reads ${now} after writing ${setting.value}`);
      } catch (error) {
        throw new HavenError(
          'internal',
          `isolated network '${libvirtNetwork}': cannot set ${path} to ${setting.value} (${setting.why}) on bridge ${bridge}: ${error instanceof Error ? error.message : String(error)}. Its drills are not started: they would not be isolated`,
          { network: libvirtNetwork, bridge, setting: setting.key },
        );
      }
    }
  }
}

function ignoreGone(error: unknown): void {
  if (error instanceof HavenError && (error.code === 'not_found' || error.code === 'operation_not_allowed'))
    return;
  throw error;
}
