import { join, resolve } from 'node:path';
import { createQemuDriver } from '../hypervisor/index.ts';
import { restrictUmask, tightenDataDir } from '../storage/private-files.ts';
import { type DataPath, type DataPathOptions, startDataPath } from './data-path.ts';
import { type HostAgent, type HostAgentOptions, startHostAgent } from './host-agent.ts';

export interface HostOptions extends Omit<DataPathOptions, 'dataDir'> {
  dataDir: string;
  enrol?: HostAgentOptions['enrol'];
  log?: (line: string) => void;
}

export interface RunningHost {
  agent: HostAgent;
  dataPath: DataPath;
  stop(): Promise<void>;
}

/**
 * A complete host: the data path (disk service, replication, replica store),
 * the QEMU driver, and the agent that offers them to the vault over the
 * control channel.
 */
export async function startHost(hostOptions: HostOptions): Promise<RunningHost> {
  // Resolved once: the host's state file, journals and sockets are named by absolute paths.
  const options = { ...hostOptions, dataDir: resolve(hostOptions.dataDir) };
  restrictUmask();
  await tightenDataDir(options.dataDir);
  const dataPath = await startDataPath(options);
  try {
    const hypervisor = createQemuDriver({ stateDir: join(options.dataDir, 'hypervisor') });
    const agent = await startHostAgent({
      dataDir: options.dataDir,
      ...(options.enrol ? { enrol: options.enrol } : {}),
      services: { ...dataPath.services, hypervisor },
      capabilities: [...dataPath.capabilities, 'hypervisor:qemu'],
      replicationAddress: dataPath.replicationAddress,
      replicationFingerprint: dataPath.replicationFingerprint,
      storageFolders: dataPath.storageFolders,
      ...(options.log ? { log: options.log } : {}),
    });
    return {
      agent,
      dataPath,
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
