import { randomUUID } from 'node:crypto';
import { type Clock, isoNow } from '../clock/index.ts';
import type { ControlServerEvents } from '../control/control-server.ts';
import type { HypervisorInventory } from '../hypervisor/hypervisor.ts';
import type { Store } from '../store/index.ts';

/**
 * Keeps the hosts table and alerts in step with the control channel: a host
 * that misses heartbeats is marked unreachable and raises one alert, which is
 * cleared when the host is heard from again. `reconcile` runs each time a
 * host (re)connects: the vault tells it what it should be running.
 */
export function watchHosts(
  store: Store,
  clock: Clock,
  reconcile?: (hostId: string) => Promise<string[]>,
): ControlServerEvents {
  const setStatus = async (hostId: string, status: 'connected' | 'unreachable') => {
    const host = await store.hosts.get(hostId);
    if (host && host.status !== status) await store.hosts.update({ ...host, status });
    return host;
  };
  return {
    onHostConnected: async (hostId) => {
      await store.hosts.recordHeartbeat(hostId, isoNow(clock));
      const host = await setStatus(hostId, 'connected');
      const stopped = (await reconcile?.(hostId)) ?? [];
      if (stopped.length > 0) {
        console.error(
          `haven: host '${host?.name ?? hostId}' was replicating machine(s) ${stopped.join(', ')} that the vault does not protect from it; stopped`,
        );
      }
    },
    onHostHeartbeat: (hostId) => store.hosts.recordHeartbeat(hostId, isoNow(clock)),
    onHostInventory: async (hostId, inventory) => {
      const host = await store.hosts.get(hostId);
      const reported = inventory as {
        capabilities?: unknown;
        version?: unknown;
        replicationAddress?: unknown;
        replicationFingerprint?: unknown;
        storageFolders?: unknown;
        hypervisor?: HypervisorInventory | null;
      };
      if (!host) return;
      if (reported.hypervisor && Array.isArray(reported.hypervisor.domains)) {
        await store.hosts.saveHypervisorInventory(hostId, reported.hypervisor, isoNow(clock));
      }
      await store.hosts.update({
        ...host,
        ...(Array.isArray(reported.capabilities) ? { capabilities: reported.capabilities.map(String) } : {}),
        ...(typeof reported.version === 'string' ? { version: reported.version } : {}),
        ...(typeof reported.replicationAddress === 'string'
          ? { replicationAddress: reported.replicationAddress }
          : {}),
        ...(Array.isArray(reported.storageFolders)
          ? { storageFolders: reported.storageFolders.map(String) }
          : {}),
        ...(typeof reported.replicationFingerprint === 'string'
          ? { replicationFingerprint: reported.replicationFingerprint }
          : {}),
      });
    },
    onHostUnreachable: async (hostId) => {
      const host = await setStatus(hostId, 'unreachable');
      await store.alerts.raise({
        id: randomUUID(),
        key: `host-unreachable:${hostId}`,
        severity: 'critical',
        message: `Host '${host?.name ?? hostId}' is unreachable: no heartbeat since ${host?.lastHeartbeatAt ?? 'it was enrolled'}`,
        subjectType: 'host',
        subjectId: hostId,
        raisedAt: isoNow(clock),
        clearedAt: null,
      });
    },
    onHostReachable: async (hostId) => {
      await setStatus(hostId, 'connected');
      await store.alerts.clear(`host-unreachable:${hostId}`, isoNow(clock));
    },
    onError: (error) => console.error('haven: control channel:', error),
  };
}
