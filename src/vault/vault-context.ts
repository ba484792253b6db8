import type { Clock } from '../clock/index.ts';
import type { JobEngine } from '../job-engine/index.ts';
import type { Store } from '../store/index.ts';
import type { VaultJobInputs } from './jobs/job-inputs.ts';
import type { ScriptRegistry } from './scripts/script-registry.ts';

/** What the vault knows about reaching its hosts (the control channel, seen from the API). */
export interface HostGateway {
  isConnected(hostId: string): boolean;
  call<T = unknown>(
    hostId: string,
    method: string,
    params?: unknown,
    options?: { timeoutMs?: number },
  ): Promise<T>;
}

/** Everything the vault's API handlers and job definitions share. */
export interface VaultContext {
  store: Store;
  engine: JobEngine<VaultJobInputs>;
  clock: Clock;
  hosts: HostGateway;
  version: string;
  dataDir: string;
  /**
   * How long a job carried over from before a vault restart waits for a
   * host it needs to reconnect before its step runs (default 60 s).
   */
  hostReconnectWaitMs?: number;
  /** The scripts plans may run, and the user they run as when the vault is root. */
  scripts: { registry: ScriptRegistry; user: string };
  /** What a host needs to open its control channel after enrolling. */
  controlEndpoint(): { controlAddress: string; vaultFingerprint: string };
}
