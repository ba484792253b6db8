import { createHash, randomBytes } from 'node:crypto';

/**
 * API and enrolment tokens are random secrets shown once; the vault keeps only
 * their SHA-256. The prefix tells a human (and the auth middleware) what kind
 * of token it is looking at.
 */
export const API_TOKEN_PREFIX = 'hvn_';
export const ENROLMENT_TOKEN_PREFIX = 'hve_';

export function newSecret(prefix: string): string {
  return prefix + randomBytes(24).toString('base64url');
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Enrolment tokens carry their id so the vault can find and consume them: hve_<id>.<secret>. */
export function formatEnrolmentToken(id: string, secret: string): string {
  return `${ENROLMENT_TOKEN_PREFIX}${id}.${secret}`;
}

export function parseEnrolmentToken(token: string): { id: string; secret: string } | null {
  if (!token.startsWith(ENROLMENT_TOKEN_PREFIX)) return null;
  const rest = token.slice(ENROLMENT_TOKEN_PREFIX.length);
  const dot = rest.indexOf('.');
  if (dot <= 0 || dot === rest.length - 1) return null;
  return { id: rest.slice(0, dot), secret: rest.slice(dot + 1) };
}
