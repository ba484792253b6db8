import { join, resolve } from 'node:path';
import { HavenError } from '../errors/index.ts';
import { createQemuDriver, type Hypervisor, isolatedBridge } from '../hypervisor/index.ts';
import { createLibvirtDriver } from '../hypervisor/libvirt/index.ts';
import { restrictUmask, tightenDataDir } from '../storage/private-files.ts';
import { type DataPath, type DataPathOptions, type ServerListenOptions, startDataPath } from './data-path.ts';
import { type HostAgent, type HostAgentOptions, startHostAgent } from './host-agent.ts';
import type { ServerEnrolment } from './host-services.ts';
import { createNetworkService } from './network-service.ts';

export interface HostOptions extends Omit<DataPathOptions, 'dataDir' | 'servers'> {
  dataDir: string;
  /** Serve physical servers (`--server-listen`); their enrolment tokens are redeemed with the vault. */
  servers?: Omit<ServerListenOptions, 'redeemEnrolment'>;
  enrol?: HostAgentOptions['enrol'];
  /** Drive libvirt at this URI (e.g. qemu:///system) instead of the built-in QEMU driver. */
  libvirt?: { uri: string };
  log?: (line: string) => void;
}

export interface RunningHost {
  agent: HostAgent;
  dataPath: DataPath;
  /** Which hypervisor driver the host runs: the built-in QEMU driver owns its machines, libvirt's domains are the operator's. */
  hypervisorDriver: 'qemu' | 'libvirt';
  stop(): Promise<void>;
}

/**
 * A complete host: the data path (disk service, replication, replica store),
 * the hypervisor driver (built-in QEMU, or libvirt), and the agent that offers them to the vault over the
 * control channel.
 */
export async function startHost(hostOptions: HostOptions): Promise<RunningHost> {
  // Resolved once: the host's state file, journals and sockets are named by absolute paths.
  const options = { ...hostOptions, dataDir: resolve(hostOptions.dataDir) };
  restrictUmask();
  await tightenDataDir(options.dataDir);
  const hypervisorDriver = options.libvirt ? 'libvirt' : 'qemu';
  const libvirt = options.libvirt ? createLibvirtDriver({ uri: options.libvirt.uri }) : null;
  if (libvirt) {
    // What a drill left behind when its step failed or a host stopped midway: isolated networks no domain uses.
    const removed = await libvirt.releaseIsolatedNetworks().catch((error: unknown) => {
      options.log?.(
        `isolated networks not checked: ${error instanceof Error ? error.message : String(error)}`,
      );
      return [];
    });
    if (removed.length > 0) options.log?.(`removed unused isolated networks: ${removed.join(', ')}`);
  }
  const hypervisor: Hypervisor =
    libvirt ?? createQemuDriver({ stateDir: join(options.dataDir, 'hypervisor') });
  // The agent (and its control channel) starts after the data path: enrolments wait for it.
  let agentRef: HostAgent | null = null;
  const redeemEnrolment = async (token: string): Promise<ServerEnrolment> => {
    if (agentRef === null)
      throw new HavenError('unreachable', 'the host agent is starting; retry in a moment');
    return (await agentRef.client.call('servers.redeemEnrolment', { token })) as ServerEnrolment;
  };
  const { servers, ...dataPathOptions } = options;
  const dataPath = await startDataPath({
    ...dataPathOptions,
    ...(servers ? { servers: { ...servers, redeemEnrolment } } : {}),
    mirrorDriver: libvirt?.mirror ?? null,
    mirror: { ...options.mirror, ...(options.log ? { log: options.log } : {}) },
  });
  try {
    const agent = await startHostAgent({
      dataDir: options.dataDir,
      ...(options.enrol ? { enrol: options.enrol } : {}),
      services: {
        ...dataPath.services,
        hypervisor,
        network: createNetworkService({
          isolatedBridge: libvirt ? (network) => libvirt.isolatedBridge(network) : isolatedBridge,
        }),
      },
      capabilities: [...dataPath.capabilities, `hypervisor:${hypervisorDriver}`],
      replicationAddress: dataPath.replicationAddress,
      replicationFingerprint: dataPath.replicationFingerprint,
      storageFolders: dataPath.storageFolders,
      serverEndpoint: dataPath.serverEndpoint,
      ...(options.log ? { log: options.log } : {}),
    });
    agentRef = agent;
    return {
      agent,
      dataPath,
      hypervisorDriver,
      stop: async () => {
        await agent.stop();
        await dataPath.close();
      },
    };
  } catch (error) {
    await dataPath.close();
    throw error;
  }
}
