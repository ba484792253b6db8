/**
 * One client connection on the server: handshake, optional TLS upgrade,
 * then transmission. Owns the socket and always leaves it closed.
 */
import type { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import type { MemoryAccount, NbdMemoryBudget } from './memory-budget.ts';
import type { PayloadPool } from './payload-pool.ts';
import { type HandshakeIo, type HandshakePolicy, negotiate, ProtocolViolation } from './server-handshake.ts';
import { type TransmissionLimits, TransmissionSession } from './server-transmission.ts';
import { StreamReader } from './stream-reader.ts';

export interface ConnectionSettings {
  policy: HandshakePolicy;
  limits: TransmissionLimits;
  tls: {
    context: tls.SecureContext;
    requestCert: boolean;
    /** TLS-PSK: the key of a client identity, null refuses it. */
    psk?: (identity: string) => Buffer | null;
    /**
     * With requestCert: the CAs a client certificate must be issued and
     * signed by. A TLSSocket made outside a tls.Server never checks the
     * client's certificate itself (`authorized` stays false, any
     * certificate is accepted), so the connection checks it here.
     */
    clientCas?: X509Certificate[];
    /** Told the TLS socket once its handshake succeeded and its client certificate checked (e.g. to learn its name). */
    onSecure?: (socket: tls.TLSSocket) => void;
  } | null;
  handshakeTimeoutMs: number;
  /** Reader buffer before the socket is paused. */
  readBufferBytes: number;
  /** The server's memory bound across connections. */
  memory: NbdMemoryBudget;
  payloads: PayloadPool;
}

const noop = () => {};

export class ServerConnection {
  readonly #raw: Socket;
  readonly #settings: ConnectionSettings;
  #socket: Duplex;
  #reader: StreamReader;
  #tlsActive = false;
  #session: TransmissionSession | null = null;
  #shutdown = false;
  #lastWrite: Promise<void> = Promise.resolve();
  /** Replies handed to the socket and not yet taken by the kernel, with when each was ready. */
  #pendingDone = new Map<() => void, number>();
  readonly #memory: MemoryAccount;
  #exportName: string | null = null;
  #corked = false;
  readonly closed: Promise<void>;

  constructor(raw: Socket, settings: ConnectionSettings) {
    this.#raw = raw;
    this.#settings = settings;
    this.#socket = raw;
    raw.on('error', noop);
    if (typeof raw.setNoDelay === 'function' && raw.remoteAddress) raw.setNoDelay(true);
    this.#reader = new StreamReader(raw, settings.readBufferBytes);
    let resolveClosed = noop;
    this.closed = new Promise((resolve) => {
      resolveClosed = resolve;
    });
    this.#memory = settings.memory.open({
      describe: () =>
        `the NBD client ${raw.remoteAddress ?? 'on the Unix socket'}${raw.remotePort ? `:${raw.remotePort}` : ''}${this.#exportName === null ? '' : ` of export '${this.#exportName}'`}`,
      oldestUnsentReplyMs: () => {
        for (const since of this.#pendingDone.values()) return since;
        return null;
      },
      evict: () => this.#destroy(),
    });
    this.#onClose = () => {
      // Replies that will never be sent still hold in-flight accounting.
      for (const done of [...this.#pendingDone.keys()]) done();
      settings.memory.close(this.#memory);
      resolveClosed();
    };
    raw.once('close', this.#onClose);
  }

  readonly #onClose: () => void;

  #destroy(): void {
    this.#socket.destroy();
    this.#raw.destroy();
  }

  /** The export in use once transmission started. */
  get exportName(): string | null {
    return this.#exportName;
  }

  stats(): { inFlightRequests: number; inFlightBytes: number; bufferedBytes: number } {
    return {
      inFlightRequests: this.#session?.inFlightRequests ?? 0,
      inFlightBytes: this.#session?.inFlightBytes ?? 0,
      bufferedBytes: this.#reader.buffered,
    };
  }

  start(): void {
    this.#run().catch(noop);
  }

  /**
   * Ends the connection cleanly: a client still negotiating is dropped, one in
   * transmission gets replies to the requests already received, then EOF.
   */
  shutdown(graceMs = 5000): void {
    if (this.#shutdown) return;
    this.#shutdown = true;
    if (this.#session) this.#session.stop();
    else this.#destroy();
    setTimeout(() => this.#destroy(), graceMs).unref();
  }

  async #run(): Promise<void> {
    const timer = setTimeout(() => this.#destroy(), this.#settings.handshakeTimeoutMs);
    timer.unref();
    const self = this;
    const io: HandshakeIo = {
      get reader() {
        return self.#reader;
      },
      get tlsActive() {
        return self.#tlsActive;
      },
      write: (buf) => this.#handshakeWrite(buf),
      startTls: () => this.#startTls(),
    };
    try {
      const negotiated = await negotiate(io, this.#settings.policy);
      clearTimeout(timer);
      if (!negotiated) {
        this.#endSoftly();
        return;
      }
      this.#exportName = negotiated.name;
      negotiated.exp.onConnectionOpened?.();
      const onClosed = negotiated.exp.onConnectionClosed;
      if (onClosed !== undefined) void this.closed.then(onClosed);
      const session = new TransmissionSession(
        {
          reader: this.#reader,
          write: (bufs, done) => this.#replyWrite(bufs, done),
          memory: this.#memory,
          payloads: this.#settings.payloads,
        },
        negotiated,
        this.#settings.limits,
      );
      this.#session = session;
      if (this.#shutdown) session.stop();
      await session.run();
      this.#endSoftly();
    } catch {
      // Garbage, a vanished peer or a failed TLS handshake: nothing to answer.
      this.#destroy();
    } finally {
      clearTimeout(timer);
    }
  }

  /** EOF after everything queued is sent; TLS sends close_notify first. */
  #endSoftly(): void {
    this.#socket.end();
    setTimeout(() => this.#destroy(), 2000).unref();
  }

  #replyWrite(bufs: Buffer[], done: () => void): void {
    const socket = this.#socket;
    if (socket.destroyed || !socket.writable) {
      done();
      return;
    }
    let called = false;
    const finish = () => {
      if (called) return;
      called = true;
      this.#pendingDone.delete(finish);
      done();
    };
    this.#pendingDone.set(finish, Date.now());
    // Replies completed in the same turn of the event loop leave in one writev
    // syscall at its end (libuv reads up to 32 chunks per socket event, and
    // each reply write wakes the client: on a VM a wake-up costs more than
    // the copy).
    if (!this.#corked) {
      this.#corked = true;
      socket.cork();
      setImmediate(this.#uncork, socket);
    }
    for (let i = 0; i < bufs.length - 1; i++) socket.write(bufs[i]!);
    socket.write(bufs[bufs.length - 1]!, finish);
  }

  readonly #uncork = (socket: Duplex): void => {
    this.#corked = false;
    socket.uncork();
  };

  #handshakeWrite(buf: Buffer): void {
    this.#lastWrite = new Promise((resolve) => this.#socket.write(buf, () => resolve()));
  }

  async #startTls(): Promise<void> {
    const settings = this.#settings.tls;
    if (!settings) throw new ProtocolViolation('TLS is not configured');
    await this.#lastWrite;
    const early = this.#reader.detach();
    if (early.length > 0) throw new ProtocolViolation('NBD client sent data before the TLS handshake');
    const secure = new tls.TLSSocket(this.#raw, {
      isServer: true,
      secureContext: settings.context,
      requestCert: settings.requestCert,
      rejectUnauthorized: settings.requestCert,
      ...(settings.psk === undefined
        ? {}
        : { pskCallback: (_socket: tls.TLSSocket, identity: string) => settings.psk?.(identity) ?? null }),
    });
    secure.on('error', noop);
    secure.once('close', this.#onClose);
    this.#socket = secure;
    this.#reader = new StreamReader(secure, this.#settings.readBufferBytes);
    await new Promise<void>((resolve, reject) => {
      secure.once('secure', () => resolve());
      secure.once('error', reject);
      secure.once('close', () => reject(new ProtocolViolation('NBD client left during the TLS handshake')));
    });
    if (settings.requestCert && !clientCertificateValid(secure, settings.clientCas ?? [])) {
      throw new ProtocolViolation('NBD client presented no client certificate signed by the CA');
    }
    this.#tlsActive = true;
    settings.onSecure?.(secure);
  }
}

/** The peer's certificate was issued and signed by one of the CAs and is within its validity dates. */
export function clientCertificateValid(socket: tls.TLSSocket, cas: readonly X509Certificate[]): boolean {
  const peer = socket.getPeerX509Certificate();
  if (peer === undefined) return false;
  const now = Date.now();
  if (now < Date.parse(peer.validFrom) || now > Date.parse(peer.validTo)) return false;
  return cas.some((ca) => peer.checkIssued(ca) && peer.verify(ca.publicKey));
}
