import type { ServerEndpoint, ServerLinkService } from '../../host/host-services.ts';
import type { VaultContext } from '../vault-context.ts';

/** The host's `servers` service (its server NBD listener and agent endpoint), called over the control channel. */
export function serverLinkOf(vault: VaultContext, hostId: string): ServerLinkService {
  const call = <T>(operation: keyof ServerLinkService, params: object) =>
    vault.hosts.call<T>(hostId, `servers.${operation}`, params, { timeoutMs: 30_000 });
  return {
    endpoint: () => call<ServerEndpoint | null>('endpoint', {}),
    status: (params) => call('status', params),
    shutdown: (params) => call('shutdown', params),
    forget: (params) => call('forget', params),
    fence: (params) => call('fence', params),
    unfence: (params) => call('unfence', params),
  };
}
