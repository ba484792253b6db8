import type { Host } from '../domain/model.ts';
import { HavenError } from '../errors/index.ts';
import { remoteHostServices } from '../host/host-dispatcher.ts';
import type { VaultContext } from './vault-context.ts';

/** A page waits this long for a host's own answer, not the 2 minutes a job step may. */
const INFO_TIMEOUT_MS = 5000;

export interface HostCapacity {
  hostId: string;
  /** Protected disks whose replicas this host keeps as a recovery host, and how many it accepts. */
  protectedDisks: number;
  maxProtectedDisks: number;
  /** The file system of the host's data directory (replica store and write journals), asked now. */
  storage: { dataDir: string; freeBytes: number; totalBytes: number } | null;
  /** Why `storage` is null: the host is not connected or did not answer. */
  storageUnavailable: string | null;
  platform: string | null;
  uptimeSeconds: number | null;
}

/** What a recovery host holds and has room for; the free space is asked of the host when it is connected. */
export async function hostCapacity(vault: VaultContext, host: Host): Promise<HostCapacity> {
  const protectedDisks = await vault.store.machines.countProtectedDisks(host.id);
  const base = { hostId: host.id, protectedDisks, maxProtectedDisks: host.maxProtectedDisks };
  const none = (why: string) => ({
    ...base,
    storage: null,
    storageUnavailable: why,
    platform: null,
    uptimeSeconds: null,
  });
  if (!vault.hosts.isConnected(host.id)) return none(`host '${host.name}' is ${host.status}, not connected`);
  try {
    const services = remoteHostServices((method, params) =>
      vault.hosts.call(host.id, method, params, { timeoutMs: INFO_TIMEOUT_MS }),
    );
    const info = await services.host.info();
    return {
      ...base,
      storage: {
        dataDir: info.dataDir,
        freeBytes: info.dataDirFreeBytes,
        totalBytes: info.dataDirTotalBytes,
      },
      storageUnavailable: null,
      platform: info.platform,
      uptimeSeconds: info.uptimeSeconds,
    };
  } catch (error) {
    if (error instanceof HavenError) return none(`host '${host.name}' did not answer: ${error.message}`);
    throw error;
  }
}
