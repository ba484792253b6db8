/**
 * HTTPS to the vault's REST API with its certificate pinned by fingerprint
 * (the vault's certificate is self-signed by default, so no CA vouches for
 * it). The TLS handshake completes and the fingerprint is checked before a
 * single byte of the request (and its bearer token) is written.
 */
import { request } from 'node:https';
import { isIP } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import { HavenError } from '../errors/index.ts';
import { sameFingerprint } from './vault-identity.ts';

export interface PinnedRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}

export type PinnedFetch = (url: string, init?: PinnedRequest) => Promise<Response>;

/** A fetch that talks only to a server presenting the certificate with `fingerprint`. */
export function pinnedFetch(fingerprint: string): PinnedFetch {
  return async (url, init = {}) => {
    const target = new URL(url);
    if (target.protocol !== 'https:') {
      throw new HavenError(
        'bad_request',
        `${target.origin} is plain HTTP: a pinned fingerprint needs the vault's https:// address`,
        { field: 'url' },
      );
    }
    const host = target.hostname.replace(/^\[|\]$/g, '');
    const socket = await handshake(host, Number(target.port || 443), fingerprint, target.origin);
    return new Promise<Response>((resolve, reject) => {
      const req = request(
        target,
        {
          method: init.method ?? 'GET',
          headers: init.headers ?? {},
          createConnection: () => socket,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () => {
            socket.destroy();
            const headers = new Headers();
            for (const [name, value] of Object.entries(res.headers)) {
              if (typeof value === 'string') headers.set(name, value);
            }
            const status = res.statusCode ?? 500;
            const nullBody = status === 204 || status === 304;
            resolve(new Response(nullBody ? null : Buffer.concat(chunks), { status, headers }));
          });
        },
      );
      req.on('error', (error) => {
        socket.destroy();
        reject(error);
      });
      req.end(init.body);
    });
  };
}

function handshake(host: string, port: number, fingerprint: string, origin: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    // Trust comes from the pinned fingerprint, checked below, not from a CA.
    const socket = connect({
      host,
      port,
      ...(isIP(host) ? {} : { servername: host }),
      rejectUnauthorized: false,
    });
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      const presented = socket.getPeerCertificate().fingerprint256 ?? '';
      if (!sameFingerprint(presented, fingerprint)) {
        socket.destroy();
        reject(
          new HavenError(
            'unauthenticated',
            `the vault at ${origin} presented certificate fingerprint ${presented || '(none)'}, not the pinned ${fingerprint}; refusing to send anything to it`,
            { presented, expected: fingerprint },
          ),
        );
        return;
      }
      socket.off('error', reject);
      resolve(socket);
    });
  });
}
