/**
 * The host side of enrolment: trade a one-time token for a host identity at
 * `POST {apiUrl}/api/v1/hosts/enrol`, and keep it in host.json.
 *
 * Request:  { token, name, site, capabilities, version, replicationAddress }
 * Response: { hostId, hostSecret, controlAddress: "host:port", vaultFingerprint }
 */
import { havenErrorFromBody, parseControlAddress, pinnedFetch, sameFingerprint } from '../control/index.ts';
import { isLoopbackHost } from '../control/loopback.ts';
import { HavenError } from '../errors/index.ts';
import { type HostIdentity, hostIdentityPath, loadHostIdentity, saveHostIdentity } from './host-identity.ts';

export interface EnrolOptions {
  /** The vault's REST API base URL, e.g. "https://vault:8440" (plain http only on loopback). */
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
  /**
   * The fingerprint the vault printed at start: over https its REST API must
   * present this certificate (checked before the token is sent); required there.
   */
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
  const pinned = apiTransport(options);
  let response: Response;
  try {
    response = await (options.fetch ?? pinned ?? fetch)(url, {
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
    if (error instanceof HavenError) throw error;
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
  // Over plain HTTP (loopback) the fingerprint given is the control channel's, compared here.
  if (
    !pinned &&
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

/**
 * How enrolment reaches the vault: https pinned to the fingerprint the
 * operator read off the vault; plain http only on loopback, since the token
 * goes out and the host secret comes back in the exchange.
 */
function apiTransport(options: EnrolOptions): ReturnType<typeof pinnedFetch> | null {
  const url = new URL(options.apiUrl);
  if (url.protocol === 'https:') {
    if (!options.expectedFingerprint) {
      throw new HavenError(
        'bad_request',
        `--fingerprint is required to enrol with ${url.origin}: give the fingerprint the vault printed at start, so the enrolment token goes to that vault only`,
        { field: 'fingerprint' },
      );
    }
    return pinnedFetch(options.expectedFingerprint);
  }
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    throw new HavenError(
      'bad_request',
      `${url.origin} is plain HTTP beyond loopback: the enrolment token and the host secret would cross the network in clear; use the vault's https:// address with --fingerprint`,
      { field: 'vault' },
    );
  }
  return null;
}
