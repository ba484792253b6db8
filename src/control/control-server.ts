/**
 * The vault side of the control channel: a TLS listener that authenticates
 * host agents, keeps one session per host (a newer connection replaces the
 * older one), lets the vault call host operations, and tracks liveness from
 * heartbeats. It knows nothing about the store: credentials are looked up and
 * events are handed over through callbacks that the vault wires.
 */
import type { AddressInfo } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { HavenError } from '../errors/index.ts';
import {
  CONTROL_PROTOCOL_VERSION,
  HANDSHAKE_MAX_FRAME_BYTES,
  type HostNotification,
  isRecord,
} from './control-protocol.ts';
import { encodeFrame, FrameDecoder, MAX_FRAME_BYTES } from './frame-codec.ts';
import { createNonce, verifyHostProof } from './host-proof.ts';
import { type CallOptions, RpcPeer } from './rpc-peer.ts';

export interface HostConnectionInfo {
  remoteAddress: string | undefined;
  remotePort: number | undefined;
}

/** What the server reports; every callback is optional and may be async (rejections go to onError). */
export interface ControlServerEvents {
  onHostConnected?(hostId: string, info: HostConnectionInfo): unknown;
  onHostDisconnected?(hostId: string, reason: string): unknown;
  onHostHeartbeat?(hostId: string, payload: unknown): unknown;
  onHostInventory?(hostId: string, inventory: unknown): unknown;
  onHostEvent?(hostId: string, event: unknown): unknown;
  /** No heartbeat for `missedHeartbeats` intervals (the vault raises an alert). */
  onHostUnreachable?(hostId: string): unknown;
  /** A host marked unreachable sent a heartbeat or reconnected (the vault clears the alert). */
  onHostReachable?(hostId: string): unknown;
  /** A connection failed authentication or broke the protocol; for the log. */
  onRejected?(info: HostConnectionInfo & { hostId: string | null; reason: string }): unknown;
  onError?(error: unknown): void;
}

export interface ControlServerOptions {
  /** The vault identity's PEMs (see generateVaultIdentity). */
  keyPem: string;
  certPem: string;
  /** The stored credential hash of a host (HostRepository.credentialHash), or undefined if unknown. */
  credentialHash(hostId: string): Promise<string | undefined>;
  /** Answers calls a host makes to the vault; without it they are refused as not_available. */
  handleRequest?(hostId: string, method: string, params: unknown): Promise<unknown>;
  events?: ControlServerEvents;
  heartbeatIntervalMs?: number;
  missedHeartbeats?: number;
  /** An unauthenticated connection is closed after this long. */
  authTimeoutMs?: number;
  defaultCallTimeoutMs?: number;
  maxFrameBytes?: number;
}

interface Session {
  hostId: string;
  socket: TLSSocket;
  peer: RpcPeer;
}

interface Liveness {
  lastSeen: number;
  unreachable: boolean;
}

export class ControlServer {
  readonly heartbeatIntervalMs: number;
  readonly missedHeartbeats: number;
  readonly #options: ControlServerOptions;
  readonly #events: ControlServerEvents;
  readonly #server: Server;
  readonly #sessions = new Map<string, Session>();
  readonly #liveness = new Map<string, Liveness>();
  readonly #sockets = new Set<TLSSocket>();
  #livenessTimer: NodeJS.Timeout | undefined;

  constructor(options: ControlServerOptions) {
    this.#options = options;
    this.#events = options.events ?? {};
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? 5000;
    this.missedHeartbeats = options.missedHeartbeats ?? 3;
    this.#server = createServer(
      { key: options.keyPem, cert: options.certPem, minVersion: 'TLSv1.3' },
      (socket) => this.#accept(socket),
    );
    // Bad TLS handshakes (garbage, wrong protocol) are the client's problem, not a server crash.
    this.#server.on('tlsClientError', (error, socket) => {
      this.#report('onRejected', {
        remoteAddress: socket.remoteAddress,
        remotePort: socket.remotePort,
        hostId: null,
        reason: `TLS handshake failed: ${error.message}`,
      });
      socket.destroy();
    });
    this.#server.on('error', (error) => this.#fail(error));
  }

  /** Starts listening; port 0 picks a free port. Resolves with the bound address. */
  listen(options: { host?: string; port?: number } = {}): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
        this.#server.off('error', reject);
        this.#livenessTimer = setInterval(
          () => this.#checkLiveness(),
          Math.max(10, this.heartbeatIntervalMs / 2),
        );
        this.#livenessTimer.unref();
        resolve(this.address!);
      });
    });
  }

  get address(): { host: string; port: number } | undefined {
    const address = this.#server.address() as AddressInfo | null;
    return address ? { host: address.address, port: address.port } : undefined;
  }

  isConnected(hostId: string): boolean {
    return this.#sessions.has(hostId);
  }

  /** Whether the host is currently marked unreachable (missed heartbeats). */
  isUnreachable(hostId: string): boolean {
    return this.#liveness.get(hostId)?.unreachable ?? false;
  }

  connectedHosts(): string[] {
    return [...this.#sessions.keys()];
  }

  /**
   * Starts the heartbeat clock for a host that has not connected yet (e.g.
   * every enrolled host when the vault starts), so a host that never comes
   * back is reported unreachable too.
   */
  expectHost(hostId: string): void {
    if (!this.#liveness.has(hostId)) this.#liveness.set(hostId, { lastSeen: Date.now(), unreachable: false });
  }

  /** Closes a host's session (it will reconnect unless its credential is gone); false if not connected. */
  disconnect(hostId: string, reason = 'closed by the vault'): boolean {
    const session = this.#sessions.get(hostId);
    if (!session) return false;
    this.#endSession(session, reason);
    session.socket.destroy();
    return true;
  }

  /** Stops tracking a host (it was deleted) and closes its session. */
  forgetHost(hostId: string, reason = 'host removed from the vault'): void {
    this.#liveness.delete(hostId);
    this.disconnect(hostId, reason);
  }

  call(hostId: string, method: string, params: unknown, options: CallOptions = {}): Promise<unknown> {
    const session = this.#sessions.get(hostId);
    if (!session) {
      return Promise.reject(
        new HavenError(
          'unreachable',
          `host '${hostId}' is not connected to the vault; cannot call '${method}'`,
          {
            hostId,
            method,
          },
        ),
      );
    }
    return session.peer.call(method, params, options);
  }

  /** One-way message to a host; false if it is not connected. */
  notify(hostId: string, method: string, params: unknown): boolean {
    const session = this.#sessions.get(hostId);
    if (!session) return false;
    session.peer.notify(method, params);
    return true;
  }

  async close(): Promise<void> {
    clearInterval(this.#livenessTimer);
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }

  #accept(socket: TLSSocket): void {
    this.#sockets.add(socket);
    socket.setKeepAlive(true, 10_000);
    const info: HostConnectionInfo = { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort };
    const decoder = new FrameDecoder(HANDSHAKE_MAX_FRAME_BYTES);
    const nonce = createNonce();
    let session: Session | undefined;
    let claimedHostId: string | null = null;
    let authenticating = false;

    let rejected = false;
    const reject = (code: HavenError['code'], reason: string) => {
      if (rejected) return;
      rejected = true;
      clearTimeout(authTimer);
      this.#report('onRejected', { ...info, hostId: claimedHostId, reason });
      if (socket.writable) socket.end(encodeFrame({ type: 'rejected', code, reason }));
      setTimeout(() => socket.destroy(), 1000).unref();
    };

    const authTimer = setTimeout(
      () => reject('unauthenticated', 'no valid hello within the authentication timeout'),
      this.#options.authTimeoutMs ?? 10_000,
    );

    const authenticate = async (frame: unknown) => {
      authenticating = true;
      if (
        !isRecord(frame) ||
        frame.type !== 'hello' ||
        typeof frame.hostId !== 'string' ||
        typeof frame.proof !== 'string'
      ) {
        return reject('bad_request', 'expected a hello frame with hostId and proof');
      }
      claimedHostId = frame.hostId;
      if (frame.protocol !== CONTROL_PROTOCOL_VERSION) {
        return reject(
          'bad_request',
          `control protocol ${String(frame.protocol)} is not supported; this vault speaks ${CONTROL_PROTOCOL_VERSION}`,
        );
      }
      let hash: string | undefined;
      try {
        hash = await this.#options.credentialHash(frame.hostId);
      } catch (error) {
        this.#fail(error);
        return reject('internal', 'the vault could not look up the host credential');
      }
      if (socket.destroyed) return;
      if (hash === undefined || !verifyHostProof(hash, nonce, frame.proof)) {
        return reject('unauthenticated', `host '${frame.hostId}' is unknown or its credential is wrong`);
      }
      clearTimeout(authTimer);
      session = this.#startSession(frame.hostId, socket, info);
      decoder.maxFrameBytes = this.#options.maxFrameBytes ?? MAX_FRAME_BYTES;
    };

    socket.on('data', (chunk: Buffer) => {
      try {
        for (const frame of decoder.push(chunk)) {
          if (session) session.peer.receive(frame);
          else if (!authenticating) {
            authenticate(frame).catch((error) => {
              this.#fail(error);
              socket.destroy();
            });
          }
          // Anything a host sends before the welcome is a protocol violation.
          else throw new HavenError('bad_request', 'frame sent before authentication completed');
        }
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        if (session) {
          this.#report('onRejected', { ...info, hostId: session.hostId, reason });
          socket.destroy();
        } else {
          reject('bad_request', reason);
        }
        socket.pause();
      }
    });
    socket.on('error', () => {
      // 'close' follows and does the cleanup; the error itself is the peer's.
    });
    socket.on('close', () => {
      clearTimeout(authTimer);
      this.#sockets.delete(socket);
      if (session) this.#endSession(session, 'connection closed');
    });
    socket.write(encodeFrame({ type: 'challenge', protocol: CONTROL_PROTOCOL_VERSION, nonce }));
  }

  #startSession(hostId: string, socket: TLSSocket, info: HostConnectionInfo): Session {
    const previous = this.#sessions.get(hostId);
    const session: Session = {
      hostId,
      socket,
      peer: new RpcPeer({
        remote: `host '${hostId}'`,
        defaultTimeoutMs: this.#options.defaultCallTimeoutMs ?? 30_000,
        send: (message) => {
          socket.write(encodeFrame(message, this.#options.maxFrameBytes));
        },
        handlers: {
          request: (method, params) => {
            if (!this.#options.handleRequest) {
              return Promise.reject(new HavenError('not_available', `the vault does not answer '${method}'`));
            }
            return this.#options.handleRequest(hostId, method, params);
          },
          notification: (method, params) => this.#notification(hostId, method as HostNotification, params),
        },
      }),
    };
    this.#sessions.set(hostId, session);
    if (previous) {
      previous.peer.close(
        new HavenError(
          'unreachable',
          `host '${hostId}' reconnected; calls on its previous connection were lost`,
          {
            hostId,
          },
        ),
      );
      previous.socket.destroy();
    }
    socket.write(
      encodeFrame({
        type: 'welcome',
        protocol: CONTROL_PROTOCOL_VERSION,
        heartbeatIntervalMs: this.heartbeatIntervalMs,
      }),
    );
    this.#report('onHostConnected', hostId, info);
    this.#seen(hostId);
    return session;
  }

  #endSession(session: Session, reason: string): void {
    session.peer.close(
      new HavenError('unreachable', `host '${session.hostId}' disconnected: ${reason}`, {
        hostId: session.hostId,
      }),
    );
    // A replaced session is not a disconnection: the host is still there.
    if (this.#sessions.get(session.hostId) !== session) return;
    this.#sessions.delete(session.hostId);
    this.#report('onHostDisconnected', session.hostId, reason);
  }

  #notification(hostId: string, method: HostNotification, params: unknown): void {
    switch (method) {
      case 'heartbeat':
        this.#seen(hostId);
        this.#report('onHostHeartbeat', hostId, params);
        break;
      case 'inventory':
        this.#report('onHostInventory', hostId, params);
        break;
      case 'event':
        this.#report('onHostEvent', hostId, params);
        break;
      default:
        // Unknown notifications from a newer agent are ignored, not fatal.
        break;
    }
  }

  #seen(hostId: string): void {
    const liveness = this.#liveness.get(hostId);
    if (!liveness) {
      this.#liveness.set(hostId, { lastSeen: Date.now(), unreachable: false });
      return;
    }
    liveness.lastSeen = Date.now();
    if (liveness.unreachable) {
      liveness.unreachable = false;
      this.#report('onHostReachable', hostId);
    }
  }

  #checkLiveness(): void {
    const deadline = Date.now() - this.heartbeatIntervalMs * this.missedHeartbeats;
    for (const [hostId, liveness] of this.#liveness) {
      if (!liveness.unreachable && liveness.lastSeen < deadline) {
        liveness.unreachable = true;
        this.#report('onHostUnreachable', hostId);
      }
    }
  }

  #report<K extends Exclude<keyof ControlServerEvents, 'onError'>>(
    name: K,
    ...args: Parameters<NonNullable<ControlServerEvents[K]>>
  ): void {
    const listener = this.#events[name] as ((...a: unknown[]) => unknown) | undefined;
    if (!listener) return;
    try {
      const result = listener.apply(this.#events, args);
      if (result instanceof Promise) result.catch((error) => this.#fail(error));
    } catch (error) {
      this.#fail(error);
    }
  }

  #fail(error: unknown): void {
    if (this.#events.onError) this.#events.onError(error);
    else console.error('control server:', error);
  }
}
