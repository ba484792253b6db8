import { execFile } from 'node:child_process';
import { access, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HavenError } from '../errors/index.ts';

/** Where a network's bridge lives: the host's own namespace, or a private one for isolated networks. */
export interface NetworkPlacement {
  network: string;
  isolated: boolean;
  /** Null: the host's namespace. */
  namespace: string | null;
  bridge: string;
}

/** The namespace of an isolated (test) network: nothing but its bridge and the machines' taps. */
export function isolatedNamespace(network: string): string {
  return `haven-test-${network}`;
}

export function networkPlacement(network: string, isolated: boolean): NetworkPlacement {
  return { network, isolated, namespace: isolated ? isolatedNamespace(network) : null, bridge: network };
}

/**
 * Where the built-in QEMU driver's isolated network `network` lives now: its
 * bridge in namespace `haven-test-<network>`. Refused when the network has no
 * drill machine on this host (the namespace exists only while one does). A
 * production network is never returned: its bridge is not looked up at all.
 */
export async function isolatedBridge(network: string): Promise<NetworkPlacement> {
  const placement = networkPlacement(network, true);
  const namespace = placement.namespace!;
  const kind = (await namespaceExists(namespace)) ? await linkKind(namespace, placement.bridge) : undefined;
  if (kind !== 'bridge') {
    throw new HavenError(
      'conflict',
      `isolated test network '${network}' is not running on this host (namespace ${namespace} has no bridge ${placement.bridge}); a probe runs only while a drill machine is on it`,
      { network, namespace },
    );
  }
  return placement;
}

export interface IpResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs iproute2's `ip`; a missing binary names its Debian package. */
export function runIp(args: readonly string[]): Promise<IpResult> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { env: { ...process.env, LC_ALL: 'C' } }, (error, stdout, stderr) => {
      if ((error as NodeJS.ErrnoException | null)?.code === 'ENOENT') {
        reject(
          new HavenError('not_available', "'ip' is not installed on this host", { install: 'iproute2' }),
        );
        return;
      }
      const code = error ? Number((error as { code?: unknown }).code ?? 1) || 1 : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function ipOrThrow(args: readonly string[], what: string): Promise<string> {
  const result = await runIp(args);
  if (result.code !== 0) {
    throw new HavenError('internal', `${what} failed: ip ${args.join(' ')}: ${result.stderr.trim()}`, {
      command: ['ip', ...args],
    });
  }
  return result.stdout;
}

function inNamespace(namespace: string | null, args: readonly string[]): string[] {
  return namespace ? ['-n', namespace, ...args] : [...args];
}

/**
 * Networks as Linux bridges, created on demand. A production network is a
 * bridge in the host's namespace: the operator's own (with its uplink) when it
 * exists, else one Haven creates and later removes. An isolated network is a
 * bridge in a namespace of its own, with no uplink and no address: its taps
 * are moved there, so no route or bridge on the host can carry a drill's
 * packets to production. Taps are QEMU's (gone when QEMU exits); Haven only
 * plugs them into bridges.
 */
export class BridgeNetworks {
  readonly #markers: string;
  // Creating, plugging and releasing one host's bridges one at a time keeps a
  // release from deleting a bridge another machine is being plugged into.
  #queue: Promise<unknown> = Promise.resolve();

  constructor(stateDir: string) {
    this.#markers = join(stateDir, 'networks');
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(work, work);
    this.#queue = next.catch(() => {});
    return next;
  }

  /** Makes sure the network's bridge exists and is up. */
  prepare(placement: NetworkPlacement): Promise<void> {
    return this.#serial(() => this.#prepare(placement));
  }

  /** Puts a (QEMU-created) tap into the network's bridge and brings it up. */
  plug(tap: string, placement: NetworkPlacement): Promise<void> {
    return this.#serial(async () => {
      await this.#prepare(placement);
      if (placement.namespace) {
        await ipOrThrow(
          ['link', 'set', 'dev', tap, 'netns', placement.namespace],
          `moving ${tap} into ${placement.namespace}`,
        );
      }
      // A port needs no address of its own: without one, plugging it changes no address of the host,
      // which programs watching the host's addresses (a browser aborts its requests) would see.
      await ipOrThrow(
        inNamespace(placement.namespace, ['link', 'set', 'dev', tap, 'addrgenmode', 'none']),
        `plugging ${tap} into network '${placement.network}'`,
      );
      await ipOrThrow(
        inNamespace(placement.namespace, ['link', 'set', 'dev', tap, 'master', placement.bridge, 'up']),
        `plugging ${tap} into network '${placement.network}'`,
      );
    });
  }

  /**
   * Removes what Haven created for these networks once nothing is plugged in
   * any more. An operator's bridge is never removed.
   */
  release(placements: readonly NetworkPlacement[]): Promise<void> {
    return this.#serial(async () => {
      for (const placement of placements) {
        const ports = await this.#ports(placement);
        if (ports === null || ports.length > 0) continue;
        if (placement.namespace) {
          await ipOrThrow(['netns', 'del', placement.namespace], `removing namespace ${placement.namespace}`);
        } else if (await this.#createdByHaven(placement.bridge)) {
          await ipOrThrow(['link', 'del', 'dev', placement.bridge], `removing bridge ${placement.bridge}`);
          await rm(this.#marker(placement.bridge), { force: true });
        }
      }
    });
  }

  /** Interfaces plugged into the bridge, or null when the bridge does not exist. */
  async ports(placement: NetworkPlacement): Promise<string[] | null> {
    return this.#ports(placement);
  }

  async #ports(placement: NetworkPlacement): Promise<string[] | null> {
    if (placement.namespace && !(await namespaceExists(placement.namespace))) return null;
    const result = await runIp(
      inNamespace(placement.namespace, ['-j', 'link', 'show', 'master', placement.bridge]),
    );
    if (result.code !== 0) return null;
    return (JSON.parse(result.stdout || '[]') as Array<{ ifname: string }>).map((link) => link.ifname);
  }

  async #prepare(placement: NetworkPlacement): Promise<void> {
    const { namespace, bridge, network } = placement;
    if (namespace && !(await namespaceExists(namespace))) {
      const added = await runIp(['netns', 'add', namespace]);
      if (added.code !== 0 && !(await namespaceExists(namespace))) {
        throw new HavenError(
          'internal',
          `cannot create namespace ${namespace} for network '${network}': ${added.stderr.trim()}`,
        );
      }
    }
    const kind = await linkKind(namespace, bridge);
    if (kind === undefined) {
      if (!namespace) {
        // Marked before creating, so a crash in between still lets release() remove it.
        await mkdir(this.#markers, { recursive: true });
        await writeFile(this.#marker(bridge), `${new Date().toISOString()}\n`);
      }
      const added = await runIp(inNamespace(namespace, ['link', 'add', 'name', bridge, 'type', 'bridge']));
      if (added.code !== 0 && (await linkKind(namespace, bridge)) !== 'bridge') {
        throw new HavenError(
          'internal',
          `cannot create bridge ${bridge} for network '${network}': ${added.stderr.trim()}`,
        );
      }
      // Haven's bridge carries its machines' traffic, not the host's: no address of the host on it.
      await ipOrThrow(
        inNamespace(namespace, ['link', 'set', 'dev', bridge, 'addrgenmode', 'none']),
        `creating bridge ${bridge}`,
      );
    } else if (kind !== 'bridge') {
      throw new HavenError(
        'conflict',
        `network '${network}' names interface ${bridge}, which is a ${kind || 'plain'} interface, not a bridge`,
        { network, interface: bridge, kind },
      );
    }
    await ipOrThrow(
      inNamespace(namespace, ['link', 'set', 'dev', bridge, 'up']),
      `bringing up bridge ${bridge}`,
    );
  }

  #marker(bridge: string): string {
    return join(this.#markers, `${bridge}.created`);
  }

  async #createdByHaven(bridge: string): Promise<boolean> {
    try {
      await access(this.#marker(bridge));
      return true;
    } catch {
      return false;
    }
  }
}

async function namespaceExists(namespace: string): Promise<boolean> {
  try {
    await access(join('/run/netns', namespace));
    return true;
  } catch {
    return false;
  }
}

/** The link's kind ('bridge', 'veth', '' for a plain device), or undefined when it does not exist. */
async function linkKind(namespace: string | null, name: string): Promise<string | undefined> {
  const result = await runIp(inNamespace(namespace, ['-j', '-d', 'link', 'show', 'dev', name]));
  if (result.code !== 0) return undefined;
  const [link] = JSON.parse(result.stdout) as Array<{ linkinfo?: { info_kind?: string } }>;
  return link?.linkinfo?.info_kind ?? '';
}
