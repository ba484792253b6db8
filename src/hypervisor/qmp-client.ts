import { connect, type Socket } from 'node:net';
import { type ErrorCode, HavenError } from '../errors/index.ts';

/** An asynchronous QMP event (SHUTDOWN, POWERDOWN, STOP, RESUME, BLOCK_JOB_COMPLETED...). */
export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export interface QmpGreeting {
  QMP: { version: { qemu: { major: number; minor: number; micro: number }; package: string } };
}

export interface QmpConnectOptions {
  /** Names the machine in error messages. */
  label?: string;
  /** For connecting and the greeting; QEMU serves one QMP client at a time, so a busy monitor greets late. */
  timeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * The error classes QEMU answers with, mapped to Haven's codes; anything else
 * (GenericError mostly: bad arguments, wrong state) is a conflict.
 */
const CODE_OF_CLASS: Record<string, ErrorCode> = {
  CommandNotFound: 'not_available',
  DeviceNotFound: 'not_found',
  DeviceNotActive: 'conflict',
  KVMMissingCap: 'not_available',
};

/**
 * A QMP client over a unix socket: the greeting, capability negotiation,
 * commands matched to answers by id, and events. One connection per use is
 * the intended pattern: QEMU's monitor socket serves a single client, so
 * holding it would lock out a restarted host agent.
 */
export class QmpClient {
  readonly greeting: QmpGreeting;
  readonly label: string;
  /** Resolves when the connection is gone (closed by us, or QEMU exited). */
  readonly closed: Promise<void>;
  #socket: Socket;
  #nextId = 1;
  #pending = new Map<string, Pending>();
  #listeners = new Set<(event: QmpEvent) => void>();
  #isClosed = false;

  private constructor(socket: Socket, greeting: QmpGreeting, label: string, closed: Promise<void>) {
    this.#socket = socket;
    this.greeting = greeting;
    this.label = label;
    this.closed = closed;
  }

  /** Connects, reads the greeting and leaves capability negotiation mode. */
  static async connect(path: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const label = options.label ?? path;
    const timeoutMs = options.timeoutMs ?? 5000;
    const socket = connect(path);
    socket.setEncoding('utf8');
    let client: QmpClient | undefined;
    let buffered = '';
    let onClosed!: () => void;
    const closed = new Promise<void>((resolve) => {
      onClosed = resolve;
    });

    const greeting = await new Promise<QmpGreeting>((resolve, reject) => {
      const fail = (error: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(error);
      };
      const timer = setTimeout(
        () =>
          fail(
            new HavenError(
              'unreachable',
              `QMP of '${label}' did not greet within ${timeoutMs} ms (is another client connected?)`,
              { machine: label, socket: path },
            ),
          ),
        timeoutMs,
      );
      socket.on('error', (error: NodeJS.ErrnoException) => {
        if (client) return client.#fail(error);
        fail(
          new HavenError(
            'unreachable',
            `cannot connect to the QMP socket of '${label}': ${error.code ?? error.message}`,
            {
              machine: label,
              socket: path,
              cause: error.code ?? error.message,
            },
          ),
        );
      });
      socket.on('close', () => {
        if (client) client.#fail(new Error('closed'));
        else
          fail(
            new HavenError('unreachable', `QMP of '${label}' closed before its greeting`, { machine: label }),
          );
        onClosed();
      });
      socket.on('data', (chunk: string) => {
        buffered += chunk;
        let newline = buffered.indexOf('\n');
        while (newline >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          newline = buffered.indexOf('\n');
          if (!line) continue;
          let message: Record<string, unknown>;
          try {
            message = JSON.parse(line) as Record<string, unknown>;
          } catch {
            const error = new HavenError(
              'internal',
              `QMP of '${label}' sent a line that is not JSON: ${line.slice(0, 200)}`,
            );
            if (client) client.#fail(error);
            else fail(error);
            return;
          }
          if (client) client.#dispatch(message);
          else if ('QMP' in message) {
            clearTimeout(timer);
            resolve(message as unknown as QmpGreeting);
          }
        }
      });
    });
    client = new QmpClient(socket, greeting, label, closed);
    await client.execute('qmp_capabilities', undefined, { timeoutMs });
    return client;
  }

  /**
   * Runs one command. Resolves with its `return` value; a QMP error becomes a
   * HavenError carrying the class and description; no answer within the
   * timeout is `unreachable` (the answer, if it comes, is dropped).
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: { timeoutMs?: number } = {},
  ): Promise<T> {
    if (this.#isClosed) {
      return Promise.reject(
        new HavenError('unreachable', `QMP of '${this.label}' is closed; cannot run '${command}'`, {
          machine: this.label,
          command,
        }),
      );
    }
    const id = String(this.#nextId++);
    const timeoutMs = options.timeoutMs ?? 10_000;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(
          new HavenError(
            'unreachable',
            `QMP command '${command}' on '${this.label}' got no answer within ${timeoutMs} ms`,
            {
              machine: this.label,
              command,
            },
          ),
        );
      }, timeoutMs);
      this.#pending.set(id, { command, resolve: resolve as (value: unknown) => void, reject, timer });
      this.#socket.write(
        `${JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id })}\n`,
      );
    });
  }

  /** Calls `listener` for every event from now on; returns the unsubscribe function. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * The next event named `name` (and matching `predicate`). Subscribe before
   * issuing the command that causes it. Rejects on timeout or when the
   * connection closes first.
   */
  waitForEvent(
    name: string,
    options: { timeoutMs?: number; predicate?: (event: QmpEvent) => boolean } = {},
  ): Promise<QmpEvent> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const done = (error: Error | undefined, event?: QmpEvent) => {
        clearTimeout(timer);
        unsubscribe();
        if (error) reject(error);
        else resolve(event!);
      };
      const unsubscribe = this.onEvent((event) => {
        if (event.event === name && (!options.predicate || options.predicate(event))) done(undefined, event);
      });
      const timer = setTimeout(
        () =>
          done(
            new HavenError(
              'unreachable',
              `no QMP event ${name} from '${this.label}' within ${timeoutMs} ms`,
              {
                machine: this.label,
                event: name,
              },
            ),
          ),
        timeoutMs,
      );
      this.closed.then(() =>
        done(
          new HavenError('unreachable', `QMP of '${this.label}' closed before event ${name}`, {
            machine: this.label,
            event: name,
          }),
        ),
      );
    });
  }

  async close(): Promise<void> {
    this.#socket.end();
    this.#socket.destroy();
    await this.closed;
  }

  #dispatch(message: Record<string, unknown>): void {
    if (typeof message.event === 'string') {
      const event: QmpEvent = {
        event: message.event,
        data: (message.data as Record<string, unknown>) ?? {},
        timestamp: message.timestamp as QmpEvent['timestamp'],
      };
      for (const listener of [...this.#listeners]) listener(event);
      return;
    }
    const id = typeof message.id === 'string' ? message.id : undefined;
    const pending = id === undefined ? undefined : this.#pending.get(id);
    if (!pending) return; // an answer after its timeout
    this.#pending.delete(id!);
    clearTimeout(pending.timer);
    if ('error' in message) {
      const error = message.error as { class?: string; desc?: string };
      const qmpClass = error.class ?? 'GenericError';
      pending.reject(
        new HavenError(
          CODE_OF_CLASS[qmpClass] ?? 'conflict',
          `QMP command '${pending.command}' on '${this.label}' failed: ${qmpClass}: ${error.desc ?? '(no description)'}`,
          { machine: this.label, command: pending.command, qmpClass, qmpDesc: error.desc ?? null },
        ),
      );
    } else {
      pending.resolve(message.return);
    }
  }

  #fail(cause: Error): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      this.#pending.delete(id);
      pending.reject(
        new HavenError(
          'unreachable',
          `QMP of '${this.label}' closed before answering '${pending.command}' (${cause.message})`,
          { machine: this.label, command: pending.command },
        ),
      );
    }
    this.#socket.destroy();
  }
}
