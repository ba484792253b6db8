import { createHash, randomBytes, randomUUID } from 'node:crypto';

/**
 * API and enrolment tokens are random secrets shown once; the vault keeps only
 * their SHA-256. The prefix tells a human (and the auth middleware) what kind
 * of token it is looking at.
 */
export const API_TOKEN_PREFIX = 'hvn_';
export const ENROLMENT_TOKEN_PREFIX = 'hve_';
/** A physical server's agent enrols with one of these, through its primary host. */
export const SERVER_ENROLMENT_TOKEN_PREFIX = 'hvs_';

export function newSecret(prefix: string): string {
  return prefix + randomBytes(24).toString('base64url');
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Enrolment tokens carry their id so the vault can find and consume them: hve_<id>.<secret> (hvs_ for servers). */
export function formatEnrolmentToken(id: string, secret: string, prefix = ENROLMENT_TOKEN_PREFIX): string {
  return `${prefix}${id}.${secret}`;
}

/** A new one-time enrolment token: what the store keeps (its id, hash, times) and the token shown once. */
export function newEnrolmentToken(
  now: Date,
  ttlMs: number,
  prefix = ENROLMENT_TOKEN_PREFIX,
): { id: string; secretHash: string; createdAt: string; expiresAt: string; token: string } {
  const id = randomUUID().slice(0, 8);
  const secret = newSecret('');
  return {
    id,
    secretHash: hashSecret(secret),
    createdAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + ttlMs).toISOString(),
    token: formatEnrolmentToken(id, secret, prefix),
  };
}

export function parseEnrolmentToken(
  token: string,
  prefix = ENROLMENT_TOKEN_PREFIX,
): { id: string; secret: string } | null {
  if (!token.startsWith(prefix)) return null;
  const rest = token.slice(prefix.length);
  const dot = rest.indexOf('.');
  if (dot <= 0 || dot === rest.length - 1) return null;
  return { id: rest.slice(0, dot), secret: rest.slice(dot + 1) };
}
