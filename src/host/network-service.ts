import { createHash, randomBytes } from 'node:crypto';
import { HavenError } from '../errors/index.ts';
import { type NetworkPlacement, runIp } from '../hypervisor/index.ts';
import { DEFAULT_SCRIPT_USER, runScript, scriptUser } from '../scripts/index.ts';
import type { NetworkProbeRequest, NetworkProbeResult, NetworkService } from './host-services.ts';

/** Longest a probe may run, whatever it asks. */
export const MAX_PROBE_MS = 30 * 60 * 1000;
const IPV4_CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
const NETWORK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

export interface NetworkServiceOptions {
  /** Where the isolated network's bridge is now (the hypervisor driver knows); throws when it is not isolated or not here. */
  isolatedBridge: (network: string) => Promise<NetworkPlacement>;
}

/**
 * Probes of isolated test networks: an admin's script run where it can reach
 * a drill machine and nothing else. Each probe gets a namespace of its own
 * (`haven-probe-<id>`) holding one end of a veth pair and the probe's address,
 * with no default route; the other end is plugged into the isolated network's
 * bridge. The test network itself gains no address and no route, so it stays
 * as sealed as before, and production is not reachable from the probe. One
 * probe at a time per network, so two probes never claim the same address.
 */
export function createNetworkService(options: NetworkServiceOptions): NetworkService {
  const queues = new Map<string, Promise<unknown>>();
  const serial = <T>(network: string, work: () => Promise<T>): Promise<T> => {
    const next = (queues.get(network) ?? Promise.resolve()).then(work, work);
    const settled = next.catch(() => {});
    queues.set(network, settled);
    void settled.then(() => {
      if (queues.get(network) === settled) queues.delete(network);
    });
    return next;
  };
  return {
    runProbe: async (params) => {
      const content = checkProbeRequest(params);
      return serial(params.network, async () => {
        const placement = await options.isolatedBridge(params.network);
        const user = await scriptUser(params.user ?? DEFAULT_SCRIPT_USER);
        if (user.uid === undefined) {
          throw new HavenError(
            'not_available',
            `probe of test network '${params.network}' refused: the host agent does not run as root, so it cannot enter the network`,
            { network: params.network },
          );
        }
        const probe = await joinNetwork(placement, params.probeAddress);
        try {
          const result = await runScript({
            script: { name: params.script.name, content, sha256: params.script.sha256 },
            user,
            env: params.env,
            timeoutMs: params.timeoutMs,
            netns: probe.namespace,
            killStragglers: () => killNamespace(probe.namespace),
          });
          return {
            exitCode: result.exitCode,
            signal: result.signal,
            timedOut: result.timedOut,
            durationMs: result.durationMs,
            output: result.output,
            outputBytes: result.outputBytes,
            outputTruncated: result.outputTruncated,
            runAs: user.name,
            probeAddress: params.probeAddress,
          } satisfies NetworkProbeResult;
        } finally {
          await probe.remove();
        }
      });
    },
  };
}

/** Bad input is refused before anything is made; returns the script's content. */
function checkProbeRequest(params: NetworkProbeRequest): Buffer {
  const refuse = (why: string, details: Record<string, unknown>) =>
    new HavenError('bad_request', `probe of test network '${params.network}' refused: ${why}`, details);
  if (typeof params.network !== 'string' || !NETWORK_NAME.test(params.network))
    throw refuse('not a network name', { network: params.network });
  const cidr = IPV4_CIDR.exec(params.probeAddress ?? '');
  const prefix = Number(cidr?.[5]);
  if (!cidr || cidr.slice(1, 5).some((o) => Number(o) > 255) || prefix < 1 || prefix > 30)
    throw refuse('probeAddress must be an IPv4 address with a prefix of 1 to 30 (e.g. 10.0.0.254/24)', {
      probeAddress: params.probeAddress,
    });
  if (!Number.isInteger(params.timeoutMs) || params.timeoutMs < 1 || params.timeoutMs > MAX_PROBE_MS)
    throw refuse(`timeoutMs must be 1 to ${MAX_PROBE_MS}`, { timeoutMs: params.timeoutMs });
  const badEnv = Object.entries(params.env ?? {}).find(
    ([k, v]) => !/^HAVEN_[A-Z0-9_]+$/.test(k) || typeof v !== 'string',
  );
  if (badEnv) throw refuse('only HAVEN_* variables with string values are passed', { variable: badEnv[0] });
  const content = Buffer.from(params.script?.contentBase64 ?? '', 'base64');
  const sha256 = createHash('sha256').update(content).digest('hex');
  if (sha256 !== params.script?.sha256)
    throw refuse(`script '${params.script?.name}' does not match its sha256`, {
      script: params.script?.name,
    });
  return content;
}

/** Ends every process in the namespace (also one that left the script's group with setsid). */
async function killNamespace(namespace: string): Promise<void> {
  const pids = await runIp(['netns', 'pids', namespace]);
  for (const pid of pids.stdout.split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

async function ip(args: string[], what: string): Promise<void> {
  const result = await runIp(args);
  if (result.code !== 0)
    throw new HavenError('internal', `${what} failed: ip ${args.join(' ')}: ${result.stderr.trim()}`);
}

/** The probe's namespace, plugged into the bridge; `remove` ends what runs there and deletes it (and the veth). */
async function joinNetwork(
  placement: NetworkPlacement,
  cidr: string,
): Promise<{ namespace: string; remove(): Promise<void> }> {
  const id = randomBytes(3).toString('hex');
  const namespace = `haven-probe-${id}`;
  const inside = `hvp${id}a`;
  const outside = `hvp${id}b`;
  const remove = async () => {
    await killNamespace(namespace);
    // Deleting the namespace deletes the veth pair with it, also the end on the bridge.
    await runIp(['netns', 'del', namespace]);
    await runIp([...(placement.namespace ? ['-n', placement.namespace] : []), 'link', 'del', outside]);
  };
  try {
    await ip(['netns', 'add', namespace], `creating probe namespace ${namespace}`);
    const bridgeNs = placement.namespace ? ['-n', placement.namespace] : [];
    // Both ends made where they stay: the host's own namespace never sees the pair come and go.
    await ip(
      [
        'link',
        'add',
        inside,
        'netns',
        namespace,
        'type',
        'veth',
        'peer',
        'name',
        outside,
        ...(placement.namespace ? ['netns', placement.namespace] : []),
      ],
      `creating veth ${outside}`,
    );
    await ip([...bridgeNs, 'link', 'set', outside, 'addrgenmode', 'none'], `creating veth ${outside}`);
    await ip(['-n', namespace, 'link', 'set', 'lo', 'up'], 'bringing up lo');
    await ip(['-n', namespace, 'addr', 'add', cidr, 'dev', inside], `adding ${cidr}`);
    await ip(['-n', namespace, 'link', 'set', inside, 'up'], `bringing up ${inside}`);
    await ip(
      [...bridgeNs, 'link', 'set', outside, 'master', placement.bridge, 'up'],
      `plugging ${outside} into ${placement.bridge}`,
    );
    return { namespace, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}
