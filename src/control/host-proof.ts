/**
 * How a host proves who it is on the control channel.
 *
 * At enrolment the vault makes a random `hostSecret`, gives it to the host
 * once, and stores only `credentialHash = sha256(hostSecret)` (hex). On each
 * connection the vault sends a random nonce and the host answers
 * `proof = HMAC-SHA256(key = credentialHash bytes, nonce bytes)` (hex).
 * Both sides can compute that from what they hold, and the secret itself
 * never crosses the wire again.
 *
 * Trade-off, on purpose: the stored hash is key-equivalent for this channel
 * (whoever reads the vault database or a vault backup can impersonate its
 * hosts), but the secret is not recoverable from it. Protect backups like
 * secrets. Replay is prevented by the per-connection nonce; a man in the
 * middle is prevented by the host pinning the vault certificate.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export interface HostCredential {
  /** Given to the host once; never stored by the vault. */
  hostSecret: string;
  /** What the vault stores (HostRepository.create's `credentialHash`). */
  credentialHash: string;
}

export function createHostCredential(): HostCredential {
  const hostSecret = randomBytes(32).toString('base64url');
  return { hostSecret, credentialHash: credentialHashOf(hostSecret) };
}

export function credentialHashOf(hostSecret: string): string {
  return createHash('sha256').update(hostSecret, 'utf8').digest('hex');
}

export function createNonce(): string {
  return randomBytes(32).toString('base64');
}

export function proveHost(credentialHash: string, nonce: string): string {
  return createHmac('sha256', Buffer.from(credentialHash, 'hex'))
    .update(Buffer.from(nonce, 'base64'))
    .digest('hex');
}

export function verifyHostProof(credentialHash: string, nonce: string, proof: string): boolean {
  const expected = Buffer.from(proveHost(credentialHash, nonce), 'hex');
  const given = Buffer.from(proof, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
