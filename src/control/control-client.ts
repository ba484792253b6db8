/**
 * The host side of the control channel. Connects to the vault over TLS,
 * checks the vault's certificate against the fingerprint pinned at enrolment
 * (there is no CA), proves its identity, then keeps the session: heartbeats
 * at the rate the vault asks for, answers the vault's calls, and reconnects
 * with capped exponential backoff, forever, until stopped.
 */
import { connect, type TLSSocket } from 'node:tls';
import { HavenError } from '../errors/index.ts';
import {
  CONTROL_PROTOCOL_VERSION,
  HANDSHAKE_MAX_FRAME_BYTES,
  type HostNotification,
  isRecord,
} from './control-protocol.ts';
import { encodeFrame, FrameDecoder, MAX_FRAME_BYTES } from './frame-codec.ts';
import { proveHost } from './host-proof.ts';
import { type CallOptions, RpcPeer } from './rpc-peer.ts';
import { sameFingerprint } from './vault-identity.ts';

export interface ControlClientOptions {
  /** The vault's control address, "host:port" (IPv6 as "[::1]:port"). */
  address: string;
  /** The vault certificate's SHA-256 fingerprint, pinned at enrolment. */
  vaultFingerprint: string;
  hostId: string;
  /** sha256 of the host secret (credentialHashOf(hostSecret)). */
  credentialHash: string;
  /** Answers the vault's calls; throw HavenError for a coded error. */
  handleRequest(method: string, params: unknown): Promise<unknown>;
  /** Extra fields sent with every heartbeat. */
  heartbeatPayload?(): Record<string, unknown>;
  /** Called after every successful authentication (first connect and reconnects). */
  onConnected?(session: { heartbeatIntervalMs: number }): unknown;
  onDisconnected?(error: HavenError): unknown;
  /** A connection attempt failed; the client retries after `retryInMs`. */
  onConnectFailed?(error: HavenError, retryInMs: number): unknown;
  handlers?: { notification?(method: string, params: unknown): void };
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number };
  connectTimeoutMs?: number;
  defaultCallTimeoutMs?: number;
  maxFrameBytes?: number;
}

interface Handshake {
  socket: TLSSocket;
  decoder: FrameDecoder;
  heartbeatIntervalMs: number;
  /** Frames that arrived in the same read as the welcome. */
  early: unknown[];
}

interface Session {
  socket: TLSSocket;
  peer: RpcPeer;
  heartbeat: NodeJS.Timeout;
}

export function parseControlAddress(address: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address);
  const port = Number(match?.[3]);
  if (!match || port < 1 || port > 65535) {
    throw new HavenError('validation_failed', `control address '${address}' is not "host:port"`, {
      field: 'controlAddress',
      value: address,
    });
  }
  return { host: (match[1] ?? match[2])!, port };
}

export class ControlClient {
  readonly #options: ControlClientOptions;
  #session: Session | undefined;
  #running = false;
  #attempt = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #connecting: TLSSocket | undefined;
  #lastError: HavenError | undefined;

  constructor(options: ControlClientOptions) {
    parseControlAddress(options.address);
    this.#options = options;
  }

  get connected(): boolean {
    return this.#session !== undefined;
  }

  /** Why the last connection attempt or session ended, if it did. */
  get lastError(): HavenError | undefined {
    return this.#lastError;
  }

  /** Starts the connect/reconnect loop (returns at once). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#attempt = 0;
    this.#connectLoop();
  }

  /** Stops reconnecting and closes the session; pending calls fail with `unreachable`. */
  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#retryTimer);
    this.#connecting?.destroy();
    const session = this.#session;
    if (!session) return;
    const closed = new Promise<void>((resolve) => session.socket.once('close', () => resolve()));
    session.socket.destroy();
    await closed;
  }

  call(method: string, params: unknown, options: CallOptions = {}): Promise<unknown> {
    if (!this.#session) {
      return Promise.reject(
        new HavenError(
          'unreachable',
          `not connected to the vault at ${this.#options.address}; cannot call '${method}'`,
        ),
      );
    }
    return this.#session.peer.call(method, params, options);
  }

  /** Sends a notification; false (dropped) when not connected. Inventory is re-sent on reconnect. */
  notify(method: HostNotification | string, params: unknown): boolean {
    if (!this.#session) return false;
    this.#session.peer.notify(method, params);
    return true;
  }

  /**
   * One connection attempt up to authentication. Resolves with the open
   * socket, the decoder (which may hold bytes after the welcome) and the
   * vault's heartbeat interval; rejects with a HavenError saying why.
   */
  #connectOnce(): Promise<Handshake> {
    const { address, vaultFingerprint, hostId, credentialHash } = this.#options;
    const { host, port } = parseControlAddress(address);
    return new Promise((resolve, reject) => {
      const decoder = new FrameDecoder(HANDSHAKE_MAX_FRAME_BYTES);
      // The certificate is self-signed: trust comes from the pinned fingerprint, checked below.
      const socket = connect({ host, port, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
      this.#connecting = socket;
      let settled = false;
      let verified = false;
      const fail = (error: HavenError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        reject(error);
      };
      const timer = setTimeout(
        () =>
          fail(new HavenError('unreachable', `vault at ${address} did not complete the handshake in time`)),
        this.#options.connectTimeoutMs ?? 10_000,
      );
      socket.once('secureConnect', () => {
        const presented = socket.getPeerCertificate().fingerprint256 ?? '';
        if (!sameFingerprint(presented, vaultFingerprint)) {
          fail(
            new HavenError(
              'unauthenticated',
              `vault at ${address} presented certificate fingerprint ${presented || '(none)'}, but this host was enrolled with ${vaultFingerprint}; refusing to connect (re-enrol the host if the vault's identity really changed)`,
              { address, presented, expected: vaultFingerprint },
            ),
          );
        } else {
          verified = true;
        }
      });
      const onData = (chunk: Buffer) => {
        let frames: unknown[];
        try {
          frames = decoder.push(chunk);
        } catch (error) {
          return fail(error as HavenError);
        }
        for (const [index, frame] of frames.entries()) {
          if (settled) return;
          if (!verified)
            return fail(
              new HavenError('unauthenticated', `vault at ${address} spoke before TLS was verified`),
            );
          if (!isRecord(frame))
            return fail(new HavenError('bad_request', `vault at ${address} sent a bad frame`));
          if (frame.type === 'challenge' && typeof frame.nonce === 'string') {
            socket.write(
              encodeFrame({
                type: 'hello',
                protocol: CONTROL_PROTOCOL_VERSION,
                hostId,
                proof: proveHost(credentialHash, frame.nonce),
              }),
            );
          } else if (frame.type === 'welcome' && typeof frame.heartbeatIntervalMs === 'number') {
            settled = true;
            clearTimeout(timer);
            socket.off('data', onData);
            // Held until the session's own reader is attached, so no frame is lost in between.
            socket.pause();
            decoder.maxFrameBytes = this.#options.maxFrameBytes ?? MAX_FRAME_BYTES;
            resolve({
              socket,
              decoder,
              heartbeatIntervalMs: frame.heartbeatIntervalMs,
              early: frames.slice(index + 1),
            });
          } else if (frame.type === 'rejected') {
            const code = frame.code === 'unauthenticated' ? 'unauthenticated' : 'bad_request';
            fail(
              new HavenError(code, `vault at ${address} rejected host '${hostId}': ${String(frame.reason)}`, {
                address,
                hostId,
              }),
            );
          } else {
            fail(new HavenError('bad_request', `vault at ${address} sent an unexpected handshake frame`));
          }
        }
      };
      socket.on('data', onData);
      socket.on('error', (error) =>
        fail(
          new HavenError('unreachable', `cannot reach the vault at ${address}: ${error.message}`, {
            address,
          }),
        ),
      );
      socket.on('close', () =>
        fail(new HavenError('unreachable', `vault at ${address} closed the connection during the handshake`)),
      );
    });
  }

  #connectLoop(): void {
    if (!this.#running) return;
    this.#connectOnce().then(
      (handshake) => {
        this.#connecting = undefined;
        if (!this.#running) {
          handshake.socket.destroy();
          return;
        }
        this.#attempt = 0;
        this.#startSession(handshake);
      },
      (error: HavenError) => {
        this.#connecting = undefined;
        this.#lastError = error;
        if (!this.#running) return;
        const delay = this.#nextDelay();
        this.#call('onConnectFailed', error, delay);
        this.#retryTimer = setTimeout(() => this.#connectLoop(), delay);
      },
    );
  }

  #nextDelay(): number {
    const initial = this.#options.reconnect?.initialDelayMs ?? 250;
    const max = this.#options.reconnect?.maxDelayMs ?? 30_000;
    const base = Math.min(max, initial * 2 ** Math.min(this.#attempt++, 20));
    // Jitter so a vault restart is not met by every host in the same millisecond.
    return Math.round(base * (0.8 + Math.random() * 0.2));
  }

  #startSession({ socket, decoder, heartbeatIntervalMs, early }: Handshake): void {
    const peer = new RpcPeer({
      remote: `vault at ${this.#options.address}`,
      defaultTimeoutMs: this.#options.defaultCallTimeoutMs ?? 30_000,
      send: (message) => {
        socket.write(encodeFrame(message, this.#options.maxFrameBytes));
      },
      handlers: {
        request: (method, params) => this.#options.handleRequest(method, params),
        notification: (method, params) => this.#options.handlers?.notification?.(method, params),
      },
    });
    const sendHeartbeat = () => {
      if (peer.closed) return;
      peer.notify('heartbeat', { sentAt: new Date().toISOString(), ...this.#options.heartbeatPayload?.() });
    };
    const session: Session = { socket, peer, heartbeat: setInterval(sendHeartbeat, heartbeatIntervalMs) };
    this.#session = session;
    let endReason: HavenError = new HavenError(
      'unreachable',
      `lost the connection to the vault at ${this.#options.address}`,
    );
    const receive = (frames: unknown[]) => {
      try {
        for (const frame of frames) peer.receive(frame);
      } catch (error) {
        endReason = error as HavenError;
        socket.destroy();
      }
    };
    socket.on('data', (chunk: Buffer) => {
      let frames: unknown[];
      try {
        frames = decoder.push(chunk);
      } catch (error) {
        endReason = error as HavenError;
        socket.destroy();
        return;
      }
      receive(frames);
    });
    socket.on('error', (error) => {
      endReason = new HavenError(
        'unreachable',
        `connection to the vault at ${this.#options.address} failed: ${error.message}`,
      );
    });
    socket.on('close', () => {
      clearInterval(session.heartbeat);
      peer.close(endReason);
      if (this.#session === session) this.#session = undefined;
      this.#lastError = endReason;
      this.#call('onDisconnected', endReason);
      if (this.#running) {
        this.#retryTimer = setTimeout(() => this.#connectLoop(), this.#nextDelay());
      }
    });
    sendHeartbeat();
    this.#call('onConnected', { heartbeatIntervalMs });
    receive(early);
    socket.resume();
  }

  #call<K extends 'onConnected' | 'onDisconnected' | 'onConnectFailed'>(
    name: K,
    ...args: Parameters<NonNullable<ControlClientOptions[K]>>
  ): void {
    const listener = this.#options[name] as ((...a: unknown[]) => unknown) | undefined;
    if (!listener) return;
    try {
      const result = listener.apply(this.#options, args);
      if (result instanceof Promise) result.catch((error) => console.error('control client:', error));
    } catch (error) {
      console.error('control client:', error);
    }
  }
}
