import type { HostCapacity } from '../../../src/vault/host-capacity.ts';
import { formatBytes } from '../format-time.ts';
import { useResource } from '../use-resource.ts';

/** Below this share of free space the replica store's file system is shown as a warning. */
const LOW_FREE_SHARE = 0.1;

export function useHostCapacity(hostId: string) {
  return useResource<HostCapacity>(`/hosts/${encodeURIComponent(hostId)}/capacity`, { refreshMs: 30_000 });
}

/** Protected disks this host keeps as a recovery host, against its limit. */
export function ProtectedDisks({ capacity }: { capacity: HostCapacity | undefined }) {
  if (!capacity) return <span aria-busy="true">…</span>;
  const full = capacity.protectedDisks >= capacity.maxProtectedDisks;
  return (
    <span className={full ? 'badge health-warning' : undefined} data-testid="protected-disks">
      {capacity.protectedDisks} of {capacity.maxProtectedDisks}
    </span>
  );
}

/** Free space of the file system holding the host's data directory (replica store and journals). */
export function FreeSpace({ capacity }: { capacity: HostCapacity | undefined }) {
  if (!capacity) return <span aria-busy="true">…</span>;
  if (!capacity.storage) {
    return (
      <span className="muted" title={capacity.storageUnavailable ?? undefined}>
        unknown
      </span>
    );
  }
  const { freeBytes, totalBytes, dataDir } = capacity.storage;
  const low = totalBytes > 0 && freeBytes / totalBytes < LOW_FREE_SHARE;
  return (
    <span title={dataDir} className={low ? 'badge health-warning' : undefined} data-testid="free-space">
      {formatBytes(freeBytes)} free of {formatBytes(totalBytes)}
    </span>
  );
}
