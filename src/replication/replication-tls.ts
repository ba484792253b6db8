/**
 * TLS for the replication port: both ends present a certificate and pin the
 * other's SHA-256 fingerprint (the vault distributes them), so no CA is
 * involved and a stolen vault-unrelated certificate is refused.
 */
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { generateVaultIdentity, sameFingerprint, type VaultIdentity } from '../control/index.ts';
import { HavenError } from '../errors/index.ts';

/** A host's TLS identity for replication: key, self-signed certificate, fingerprint. */
export type HostIdentity = VaultIdentity;

/** Makes a host's replication identity with openssl (ECDSA P-256, self-signed). */
export function generateHostIdentity(hostName = 'haven-host'): Promise<HostIdentity> {
  return generateVaultIdentity({ commonName: hostName });
}

function peerFingerprint(socket: TLSSocket): string | null {
  const cert = socket.getPeerCertificate();
  return cert && typeof cert.fingerprint256 === 'string' ? cert.fingerprint256 : null;
}

/** Opens a TLS connection to a receiver and checks its certificate against the pinned fingerprint. */
export function connectPinned(
  address: { host: string; port: number },
  identity: Pick<HostIdentity, 'keyPem' | 'certPem'>,
  receiverFingerprint: string,
  timeoutMs = 10_000,
): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: address.host,
      port: address.port,
      key: identity.keyPem,
      cert: identity.certPem,
      // Pinning replaces CA validation; the fingerprint is checked below before any frame is sent.
      rejectUnauthorized: false,
      servername: undefined,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new HavenError(
          'unreachable',
          `replication receiver ${address.host}:${address.port} did not answer in ${timeoutMs} ms`,
        ),
      );
    }, timeoutMs);
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(
        new HavenError('unreachable', `replication receiver ${address.host}:${address.port}: ${e.message}`, {
          cause: e.message,
        }),
      );
    });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const fp = peerFingerprint(socket);
      if (fp === null || !sameFingerprint(fp, receiverFingerprint)) {
        socket.destroy();
        reject(
          new HavenError(
            'unauthenticated',
            `replication receiver ${address.host}:${address.port} presented certificate ${fp ?? '(none)'}, not the pinned ${receiverFingerprint}`,
            { fingerprint: fp, expected: receiverFingerprint },
          ),
        );
        return;
      }
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

/**
 * A TLS server that asks for a client certificate and hands over only
 * connections whose certificate fingerprint `isAllowed` accepts.
 */
export function createPinnedServer(
  identity: Pick<HostIdentity, 'keyPem' | 'certPem'>,
  isAllowed: (fingerprint: string) => boolean,
  onConnection: (socket: TLSSocket, fingerprint: string) => void,
  onRefused: (fingerprint: string | null) => void = () => {},
): Server {
  const server = createServer(
    { key: identity.keyPem, cert: identity.certPem, requestCert: true, rejectUnauthorized: false },
    (socket) => {
      const fp = peerFingerprint(socket);
      if (fp === null || !isAllowed(fp)) {
        onRefused(fp);
        socket.destroy();
        return;
      }
      onConnection(socket, fp);
    },
  );
  // Handshake failures of strangers must not take the server down.
  server.on('tlsClientError', () => {});
  return server;
}
