import type { HostServices } from '../host/host-services.ts';
import { remoteHostServices } from '../host/index.ts';
import type { VaultContext } from './vault-context.ts';

/** How long a host may take to answer a call. */
const CALL_TIMEOUT_MS = 120_000;
/** How much longer than the wait it was asked for (`timeoutMs`) a call may take. */
const CALL_MARGIN_MS = 30_000;

/**
 * A host's services over the control channel. A call that asks the host to
 * wait (`timeoutMs`: a filesystem check, a server's shutdown, a media
 * build) may last that long and a little more, never less than any call.
 */
export function hostServices(vault: VaultContext, hostId: string): HostServices {
  return remoteHostServices((method, params) => {
    const wait = (params as { timeoutMs?: unknown } | null)?.timeoutMs;
    const asked = typeof wait === 'number' && Number.isFinite(wait) ? wait + CALL_MARGIN_MS : 0;
    return vault.hosts.call(hostId, method, params, { timeoutMs: Math.max(CALL_TIMEOUT_MS, asked) });
  });
}
