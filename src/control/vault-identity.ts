/**
 * The vault's TLS identity: an ECDSA P-256 key and a self-signed certificate.
 * node:crypto can make keys but not X.509 certificates, so the `openssl` CLI
 * makes both. The PEMs are returned (not left on disk) so the vault keeps them
 * in its database: a vault restored from a backup presents the same
 * certificate and enrolled hosts, which pin its fingerprint, reconnect.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { HavenError } from '../errors/index.ts';

const run = promisify(execFile);

export interface VaultIdentity {
  keyPem: string;
  certPem: string;
  /** SHA-256 of the certificate, as X509Certificate.fingerprint256 ("AB:CD:..."). */
  fingerprint: string;
}

export interface GenerateVaultIdentityOptions {
  /** Names and addresses hosts may use to reach the vault; localhost and 127.0.0.1 are always added. */
  hostNames?: string[];
  commonName?: string;
  /**
   * Hosts pin the fingerprint and do not check validity dates, so expiry would
   * only confuse other TLS clients; default 100 years.
   */
  days?: number;
}

export async function generateVaultIdentity(
  options: GenerateVaultIdentityOptions = {},
): Promise<VaultIdentity> {
  const { keyPem, certPem } = await createSelfSignedCertificate({
    hostNames: options.hostNames ?? [],
    commonName: options.commonName ?? 'haven-vault',
    days: options.days ?? 36500,
  });
  return { keyPem, certPem, fingerprint: certificateFingerprint(certPem) };
}

export interface SelfSignedCertificateOptions {
  /** DNS names and IP addresses besides localhost and 127.0.0.1. */
  hostNames: string[];
  commonName: string;
  days: number;
  /** Further `-addext` values (e.g. to make the certificate its own CA for clients that verify a chain). */
  extensions?: string[];
}

/** An ECDSA P-256 key and a self-signed certificate for the given names, as PEM. */
export async function createSelfSignedCertificate(
  options: SelfSignedCertificateOptions,
): Promise<{ keyPem: string; certPem: string }> {
  const names = [...new Set(['localhost', '127.0.0.1', ...options.hostNames])];
  for (const name of names) {
    if (!/^[A-Za-z0-9.:*-]+$/.test(name)) {
      throw new HavenError('validation_failed', `vault host name '${name}' is not a DNS name or IP address`, {
        field: 'hostNames',
        value: name,
      });
    }
  }
  const san = names.map((name) => (isIP(name) ? `IP:${name}` : `DNS:${name}`)).join(',');
  const dir = await mkdtemp(join(tmpdir(), 'haven-identity-'));
  try {
    const keyFile = join(dir, 'key.pem');
    const certFile = join(dir, 'cert.pem');
    try {
      await run('openssl', [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-sha256',
        '-days',
        String(options.days),
        '-subj',
        `/CN=${options.commonName}`,
        '-addext',
        `subjectAltName=${san}`,
        ...(options.extensions ?? []).flatMap((extension) => ['-addext', extension]),
        '-keyout',
        keyFile,
        '-out',
        certFile,
      ]);
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr?.trim();
      throw new HavenError(
        'internal',
        `could not create a TLS certificate with openssl (is the 'openssl' package installed?): ${stderr || (error as Error).message}`,
      );
    }
    const [keyPem, certPem] = await Promise.all([readFile(keyFile, 'utf8'), readFile(certFile, 'utf8')]);
    return { keyPem, certPem };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function certificateFingerprint(certPem: string): string {
  return new X509Certificate(certPem).fingerprint256;
}

/** Fingerprints compare without regard to case or separators, so operators may paste either form. */
export function sameFingerprint(a: string, b: string): boolean {
  const norm = (f: string) => f.replace(/[^0-9a-f]/gi, '').toUpperCase();
  return norm(a) === norm(b) && norm(a).length === 64;
}
