import type { ServerLinkService } from '../../host/host-services.ts';
import { remoteHostServices } from '../../host/index.ts';
import type { VaultContext } from '../vault-context.ts';

/** How long a call to the host's `servers` service may take beyond the wait it was asked for. */
const CALL_MARGIN_MS = 30_000;

/**
 * The host's `servers` service (its server NBD listener and agent endpoint),
 * over the control channel; a shutdown's call lasts as long as the wait it
 * asks the host for, and a little more.
 */
export function serverLinkOf(vault: VaultContext, hostId: string): ServerLinkService {
  return remoteHostServices((method, params) => {
    const wait = (params as { timeoutMs?: unknown } | null)?.timeoutMs;
    const timeoutMs = CALL_MARGIN_MS + (typeof wait === 'number' && Number.isFinite(wait) ? wait : 0);
    return vault.hosts.call(hostId, method, params, { timeoutMs });
  }).servers;
}
