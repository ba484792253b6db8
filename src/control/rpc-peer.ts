/**
 * One side of an authenticated control session: sends calls and matches
 * responses, answers the other side's calls through a handler, and fails
 * every pending call with `unreachable` when the session ends. Shared by
 * the vault and the host so both speak exactly the same RPC.
 */
import { type ErrorCode, HavenError } from '../errors/index.ts';
import { isRecord, type RpcErrorBody } from './control-protocol.ts';

export interface CallOptions {
  timeoutMs?: number;
}

export interface RpcHandlers {
  /** Answers a call from the other side; throw HavenError for a coded error. */
  request(method: string, params: unknown): Promise<unknown>;
  notification(method: string, params: unknown): void;
}

interface Pending {
  method: string;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  timer: NodeJS.Timeout;
}

// `satisfies` keeps this in step with ErrorCode: a new code fails type checking here.
const errorCodes = {
  bad_request: true,
  validation_failed: true,
  unauthenticated: true,
  forbidden: true,
  not_found: true,
  conflict: true,
  operation_not_allowed: true,
  cancel_refused: true,
  limit_exceeded: true,
  payload_too_large: true,
  not_available: true,
  unreachable: true,
  internal: true,
} satisfies Record<ErrorCode, true>;

function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(errorCodes, value);
}

/** The HavenError an error body `{code, message, details}` describes; unknown codes become `internal`. */
export function havenErrorFromBody(body: unknown, fallbackMessage: string): HavenError {
  if (!isRecord(body)) return new HavenError('internal', fallbackMessage);
  const code = isErrorCode(body.code) ? body.code : 'internal';
  const message = typeof body.message === 'string' ? body.message : fallbackMessage;
  const details = isRecord(body.details) ? body.details : {};
  return new HavenError(code, message, details);
}

export function errorBody(error: unknown): RpcErrorBody {
  if (error instanceof HavenError) {
    return { code: error.code, message: error.message, details: error.details };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: 'internal', message, details: {} };
}

export class RpcPeer {
  readonly #send: (message: unknown) => void;
  readonly #handlers: RpcHandlers;
  readonly #defaultTimeoutMs: number;
  /** Names the remote side in error messages, e.g. "host 'h1'". */
  readonly #remote: string;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed: HavenError | undefined;

  constructor(options: {
    send: (message: unknown) => void;
    handlers: RpcHandlers;
    defaultTimeoutMs: number;
    remote: string;
  }) {
    this.#send = options.send;
    this.#handlers = options.handlers;
    this.#defaultTimeoutMs = options.defaultTimeoutMs;
    this.#remote = options.remote;
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  call(method: string, params: unknown, options: CallOptions = {}): Promise<unknown> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#nextId++;
    const timeoutMs = options.timeoutMs ?? this.#defaultTimeoutMs;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(
          new HavenError('unreachable', `${this.#remote} did not answer '${method}' within ${timeoutMs} ms`, {
            method,
            timeoutMs,
          }),
        );
      }, timeoutMs);
      this.#pending.set(id, { method, resolve, reject, timer });
      try {
        this.#send({ id, method, params: params ?? null });
      } catch (error) {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(error);
      }
    });
  }

  notify(method: string, params: unknown): void {
    if (this.#closed) throw this.#closed;
    this.#send({ method, params: params ?? null });
  }

  /** Handles one decoded frame; throws HavenError if it is not a valid RPC message. */
  receive(message: unknown): void {
    if (!isRecord(message)) {
      throw new HavenError('bad_request', `${this.#remote} sent a control message that is not an object`);
    }
    const { id, method } = message;
    if (typeof method === 'string') {
      if (id === undefined) {
        this.#handlers.notification(method, message.params);
      } else if (typeof id === 'number') {
        void this.#answer(id, method, message.params);
      } else {
        throw new HavenError('bad_request', `${this.#remote} sent request '${method}' with a non-numeric id`);
      }
      return;
    }
    if (typeof id !== 'number') {
      throw new HavenError(
        'bad_request',
        `${this.#remote} sent a control message with neither method nor id`,
      );
    }
    const pending = this.#pending.get(id);
    // A late answer to a call that already timed out is dropped, not an error.
    if (!pending) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if ('error' in message) {
      pending.reject(havenErrorFromBody(message.error, `'${pending.method}' failed on ${this.#remote}`));
    } else {
      pending.resolve(message.result);
    }
  }

  /** Ends the session: every pending call fails with `reason`. */
  close(reason: HavenError): void {
    if (this.#closed) return;
    this.#closed = reason;
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(reason);
    }
    this.#pending.clear();
  }

  async #answer(id: number, method: string, params: unknown): Promise<void> {
    let response: unknown;
    try {
      response = { id, result: (await this.#handlers.request(method, params)) ?? null };
    } catch (error) {
      response = { id, error: errorBody(error) };
    }
    if (this.#closed) return;
    try {
      this.#send(response);
    } catch (error) {
      // e.g. a result too large for one frame: tell the caller instead of leaving it waiting.
      this.#send({ id, error: errorBody(error) });
    }
  }
}
