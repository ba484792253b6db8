/**
 * An NBD server (fixed newstyle, structured replies, base:allocation,
 * STARTTLS) serving named exports from BlockBackends over a Unix socket or TCP.
 */
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { HavenError } from '../errors/index.ts';
import { DEFAULT_MAX_PAYLOAD, MAX_STRING_LENGTH, PSK_CIPHERS } from './constants.ts';
import { DEFAULT_NBD_MEMORY_BYTES, NbdMemoryBudget } from './memory-budget.ts';
import { PayloadPool } from './payload-pool.ts';
import { ServerConnection } from './server-connection.ts';
import type { ExportLookup, NbdExport } from './server-handshake.ts';
import type { TransmissionLimits } from './server-transmission.ts';

export type { NbdExport } from './server-handshake.ts';

export type NbdListenAddress = { path: string } | { host: string; port: number };

export type NbdServerTlsOptions = NbdServerCertTls | NbdServerPskTls;

export interface NbdServerCertTls {
  key: string | Buffer;
  cert: string | Buffer;
  /** CA used to verify client certificates when `requestCert` is set. */
  ca?: string | Buffer;
  requestCert?: boolean;
  /** FORCEDTLS: every option but STARTTLS is refused with ERR_TLS_REQD until TLS is up. */
  required?: boolean;
}

/**
 * TLS with pre-shared keys (RFC 4279), as qemu's `tls-creds-psk` and libnbd's
 * `tls-psk-file` speak it: no certificates, a key per client identity. A
 * connection sees only the exports given its identity (`NbdExport.pskIdentity`).
 */
export interface NbdServerPskTls {
  /** The key of a client identity, or null to refuse it. */
  psk: (identity: string) => Buffer | null;
  required?: boolean;
}

export interface NbdServerOptions {
  exports?: Record<string, NbdExport> | Map<string, NbdExport>;
  /** Name of the export served to clients asking for the empty name. */
  defaultExport?: string;
  tls?: NbdServerTlsOptions;
  /** Maximum READ/WRITE payload; default 32 MiB (the spec's portable limit). */
  maxPayload?: number;
  /** Per connection: stop reading requests while this many payload bytes are in flight. Default 64 MiB. */
  maxInFlightBytes?: number;
  maxInFlightRequests?: number;
  /**
   * Bound across all connections (requests being served plus replies not yet
   * sent): a budget shared with other servers, or its size (default 256 MiB).
   */
  memory?: NbdMemoryBudget | { totalBytes: number; evictAfterMs?: number };
  handshakeTimeoutMs?: number;
  /**
   * Why a client certificate (by its CN) may open no export at all now, or
   * null: asked at every export lookup, so a refusal (a server that failed
   * over) applies to the next connection without restarting the listener.
   */
  certificateRefused?: (name: string) => string | null;
  /** Where the server reports closing connections that hold memory and refused exports (default: stderr). */
  log?: (line: string) => void;
}

export interface NbdServerStats {
  connections: number;
  inFlightRequests: number;
  inFlightBytes: number;
  bufferedBytes: number;
}

export class NbdServer {
  readonly #exports = new Map<string, NbdExport>();
  readonly #defaultExport: string | undefined;
  readonly #connections = new Set<ServerConnection>();
  readonly #limits: TransmissionLimits;
  readonly #tls: NbdServerTlsOptions | undefined;
  readonly #tlsContext: tls.SecureContext | null;
  readonly #handshakeTimeoutMs: number;
  readonly #memory: NbdMemoryBudget;
  /** Shared by the connections: WRITE payloads copied out of socket reads reuse its buffers. */
  readonly #payloads = new PayloadPool();
  readonly #log: (line: string) => void;
  readonly #certificateRefused: (name: string) => string | null;
  /** The CAs client certificates are checked against (requestCert). */
  readonly #clientCas: X509Certificate[];
  #listener: net.Server | null = null;
  #closing = false;

  constructor(options: NbdServerOptions = {}) {
    const entries = options.exports instanceof Map ? options.exports : Object.entries(options.exports ?? {});
    for (const [name, exp] of entries) this.addExport(name, exp);
    this.#defaultExport = options.defaultExport;
    const maxPayload = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    this.#limits = {
      maxPayload,
      maxInFlightBytes: Math.max(options.maxInFlightBytes ?? 64 * 1024 * 1024, maxPayload),
      maxInFlightRequests: options.maxInFlightRequests ?? 256,
    };
    this.#tls = options.tls;
    this.#tlsContext = secureContextOf(options.tls);
    this.#clientCas = clientCasOf(options.tls);
    this.#handshakeTimeoutMs = options.handshakeTimeoutMs ?? 30_000;
    this.#log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.#certificateRefused = options.certificateRefused ?? (() => null);
    this.#memory =
      options.memory instanceof NbdMemoryBudget
        ? options.memory
        : new NbdMemoryBudget({
            totalBytes: options.memory?.totalBytes ?? DEFAULT_NBD_MEMORY_BYTES,
            ...(options.memory?.evictAfterMs === undefined
              ? {}
              : { evictAfterMs: options.memory.evictAfterMs }),
            ...(options.log === undefined ? {} : { log: options.log }),
          });
    if (this.#memory.totalBytes < maxPayload) {
      throw new HavenError(
        'validation_failed',
        `the NBD server's memory budget (${this.#memory.totalBytes} bytes) is smaller than its largest request (${maxPayload} bytes)`,
        { field: 'memory' },
      );
    }
  }

  /** The memory budget this server's connections share. */
  get memory(): NbdMemoryBudget {
    return this.#memory;
  }

  addExport(name: string, exp: NbdExport): void {
    if (Buffer.byteLength(name, 'utf8') > MAX_STRING_LENGTH || name.includes('\0')) {
      throw new HavenError(
        'validation_failed',
        `NBD export name '${name.slice(0, 64)}' is not a valid NBD string`,
      );
    }
    if (this.#exports.has(name)) {
      throw new HavenError('conflict', `NBD export '${name}' already exists; remove it first`, { name });
    }
    if (!Number.isSafeInteger(exp.backend.size) || exp.backend.size < 0) {
      throw new HavenError(
        'validation_failed',
        `NBD export '${name}' has an invalid size ${exp.backend.size}`,
      );
    }
    this.#exports.set(name, exp);
  }

  /**
   * Stops offering the export and ends the connections using it (their
   * requests in flight are answered first). The backend is not closed.
   */
  async removeExport(name: string): Promise<void> {
    if (!this.#exports.delete(name)) return;
    await this.disconnectExport(name);
  }

  /** Ends the connections using the export (requests in flight answered first); it stays offered. */
  async disconnectExport(name: string): Promise<void> {
    const users = [...this.#connections].filter((c) => c.exportName === name);
    for (const c of users) c.shutdown();
    await Promise.all(users.map((c) => c.closed));
  }

  exportNames(): string[] {
    return [...this.#exports.keys()];
  }

  async listen(address: NbdListenAddress): Promise<NbdListenAddress> {
    if (this.#listener) throw new HavenError('conflict', 'NBD server is already listening');
    const listener = net.createServer((socket) => this.handleConnection(socket));
    this.#listener = listener;
    if ('path' in address) listener.listen(address.path);
    else listener.listen(address.port, address.host);
    try {
      await once(listener, 'listening');
    } catch (e) {
      // Not listening after all (the address is taken): the server may be asked to listen elsewhere.
      this.#listener = null;
      throw e;
    }
    const bound = listener.address();
    if (bound && typeof bound === 'object') return { host: bound.address, port: bound.port };
    return { path: 'path' in address ? address.path : String(bound) };
  }

  /** Serves one already-accepted socket (also usable without `listen`). */
  handleConnection(socket: net.Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const lookup: ExportLookup = {
      lookup: (name) => {
        const canonical = name === '' && this.#defaultExport !== undefined ? this.#defaultExport : name;
        const exp = this.#exports.get(canonical);
        if (exp && !visible(exp)) {
          const refused = certificateName === null ? null : this.#certificateRefused(certificateName);
          this.#log(
            `NBD client ${socket.remoteAddress ?? 'on the Unix socket'} (${certificateName === null ? 'no client certificate' : `certificate CN=${certificateName}`}) asked for export '${canonical}', which is not served to it${refused === null ? '' : ` (${refused})`}: refused as unknown`,
          );
          return undefined;
        }
        return exp ? { name: canonical, exp } : undefined;
      },
      list: () => [...this.#exports.entries()].filter(([, exp]) => visible(exp)),
    };
    const tlsOptions = this.#tls;
    let identity: string | null = null;
    /** The subject CN of the verified client certificate, once TLS is up. */
    let certificateName: string | null = null;
    const visible = (exp: NbdExport) =>
      (exp.pskIdentity === undefined || exp.pskIdentity === identity) &&
      (exp.certificateName === undefined ||
        (exp.certificateName === certificateName && this.#certificateRefused(certificateName) === null));
    const conn = new ServerConnection(socket, {
      policy: {
        exports: lookup,
        tlsAvailable: this.#tlsContext !== null,
        tlsRequired: this.#tls?.required === true,
        maxPayload: this.#limits.maxPayload,
        shuttingDown: () => this.#closing,
      },
      limits: this.#limits,
      tls:
        this.#tlsContext === null || tlsOptions === undefined
          ? null
          : 'psk' in tlsOptions
            ? {
                context: this.#tlsContext,
                requestCert: false,
                psk: (id) => {
                  const key = tlsOptions.psk(id);
                  if (key !== null) identity = id;
                  return key;
                },
              }
            : {
                context: this.#tlsContext,
                requestCert: tlsOptions.requestCert === true,
                clientCas: this.#clientCas,
                onSecure: (secure) => {
                  const cn =
                    tlsOptions.requestCert === true ? secure.getPeerCertificate().subject?.CN : undefined;
                  certificateName = typeof cn === 'string' ? cn : null;
                },
              },
      handshakeTimeoutMs: this.#handshakeTimeoutMs,
      readBufferBytes: 256 * 1024,
      memory: this.#memory,
      payloads: this.#payloads,
    });
    this.#connections.add(conn);
    void conn.closed.then(() => this.#connections.delete(conn));
    conn.start();
  }

  stats(): NbdServerStats {
    const total: NbdServerStats = {
      connections: this.#connections.size,
      inFlightRequests: 0,
      inFlightBytes: 0,
      bufferedBytes: 0,
    };
    for (const c of this.#connections) {
      const s = c.stats();
      total.inFlightRequests += s.inFlightRequests;
      total.inFlightBytes += s.inFlightBytes;
      total.bufferedBytes += s.bufferedBytes;
    }
    return total;
  }

  /** Stops listening and ends every connection cleanly (in-flight requests are answered). */
  async close(): Promise<void> {
    this.#closing = true;
    const listener = this.#listener;
    const listening = listener
      ? new Promise<void>((resolve) => listener.close(() => resolve()))
      : Promise.resolve();
    const conns = [...this.#connections];
    for (const c of conns) c.shutdown();
    await Promise.all([listening, ...conns.map((c) => c.closed)]);
  }
}

function secureContextOf(options: NbdServerTlsOptions | undefined): tls.SecureContext | null {
  if (options === undefined) return null;
  if ('psk' in options) {
    return tls.createSecureContext({ ciphers: PSK_CIPHERS, maxVersion: 'TLSv1.2', minVersion: 'TLSv1.2' });
  }
  return tls.createSecureContext({ key: options.key, cert: options.cert, ca: options.ca });
}

function clientCasOf(options: NbdServerTlsOptions | undefined): X509Certificate[] {
  if (options === undefined || 'psk' in options || options.ca === undefined) return [];
  const pems =
    String(options.ca).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return pems.map((pem) => new X509Certificate(pem));
}
