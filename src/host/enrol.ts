/**
 * The host side of enrolment: trade a one-time token for a host identity at
 * `POST {apiUrl}/api/v1/hosts/enrol`, and keep it in host.json.
 *
 * Request:  { token, name, site, capabilities, version, replicationAddress }
 * Response: { hostId, hostSecret, controlAddress: "host:port", vaultFingerprint }
 */
import { havenErrorFromBody, parseControlAddress, sameFingerprint } from '../control/index.ts';
import { HavenError } from '../errors/index.ts';
import { type HostIdentity, hostIdentityPath, loadHostIdentity, saveHostIdentity } from './host-identity.ts';

export interface EnrolOptions {
  /** The vault's REST API base URL, e.g. "http://vault:8080". */
  apiUrl: string;
  token: string;
  name: string;
  /** Site name (or id) the host belongs to. */
  site: string;
  dataDir: string;
  capabilities?: string[];
  version?: string;
  replicationAddress?: string | null;
  storageFolders?: string[];
  /** When given (e.g. read off the vault's console), the vault must present this fingerprint. */
  expectedFingerprint?: string;
  fetch?: typeof fetch;
}

export async function enrol(options: EnrolOptions): Promise<HostIdentity> {
  const existing = await loadHostIdentity(options.dataDir);
  if (existing) {
    throw new HavenError(
      'conflict',
      `${hostIdentityPath(options.dataDir)} already enrols this host as '${existing.name}' (${existing.hostId}) with the vault at ${existing.apiUrl}; remove it to enrol again`,
      { hostId: existing.hostId },
    );
  }
  const url = new URL('/api/v1/hosts/enrol', options.apiUrl).toString();
  let response: Response;
  try {
    response = await (options.fetch ?? fetch)(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${options.token}` },
      body: JSON.stringify({
        token: options.token,
        name: options.name,
        site: options.site,
        capabilities: options.capabilities ?? [],
        version: options.version ?? null,
        replicationAddress: options.replicationAddress ?? null,
        storageFolders: options.storageFolders ?? [],
      }),
    });
  } catch (error) {
    throw new HavenError('unreachable', `cannot reach the vault at ${url}: ${(error as Error).message}`, {
      url,
    });
  }
  const body = (await response.json().catch(() => null)) as Record<string, unknown> | null;
  if (!response.ok) {
    const error = havenErrorFromBody(body?.error, `HTTP ${response.status} ${response.statusText}`);
    throw new HavenError(error.code, `enrolment refused by the vault: ${error.message}`, error.details);
  }
  const field = (name: string): string => {
    const value = body?.[name];
    if (typeof value !== 'string' || value === '') {
      throw new HavenError('internal', `the vault's enrolment answer has no valid '${name}'`, {
        field: name,
      });
    }
    return value;
  };
  const identity: HostIdentity = {
    hostId: field('hostId'),
    name: options.name,
    site: options.site,
    hostSecret: field('hostSecret'),
    controlAddress: field('controlAddress'),
    vaultFingerprint: field('vaultFingerprint'),
    apiUrl: options.apiUrl,
    enrolledAt: new Date().toISOString(),
  };
  parseControlAddress(identity.controlAddress);
  if (
    options.expectedFingerprint &&
    !sameFingerprint(identity.vaultFingerprint, options.expectedFingerprint)
  ) {
    throw new HavenError(
      'unauthenticated',
      `the vault at ${options.apiUrl} answered with fingerprint ${identity.vaultFingerprint}, expected ${options.expectedFingerprint}`,
    );
  }
  await saveHostIdentity(options.dataDir, identity);
  return identity;
}
