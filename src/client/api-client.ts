import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type PinnedFetch, pinnedFetch } from '../control/index.ts';
import type { ErrorCode } from '../errors/index.ts';
import { HavenError } from '../errors/index.ts';

export interface Connection {
  url: string;
  token: string;
  /** The https vault's certificate fingerprint, pinned; none for plain HTTP (loopback). */
  fingerprint?: string;
}

/** The CLI's own settings in the data directory: the fingerprint pinned for each vault address. */
const CLI_CONFIG = 'cli.json';

interface CliConfig {
  pins: Record<string, string>;
}

/**
 * Where the CLI finds its vault: --url/--token, then HAVEN_URL/HAVEN_TOKEN,
 * then the files `haven up` leaves in its data directory (vault.json, admin.token).
 * An https vault's fingerprint: --fingerprint (saved in DATA/cli.json for
 * later calls), HAVEN_FINGERPRINT, vault.json, then what cli.json saved.
 */
export function resolveConnection(flags: {
  url?: string;
  token?: string;
  data?: string;
  fingerprint?: string;
}): Connection {
  const dataDir = flags.data ?? process.env.HAVEN_DATA ?? '.haven';
  const fromFile = (file: string): string | undefined => {
    try {
      return readFileSync(join(dataDir, file), 'utf8');
    } catch {
      return undefined;
    }
  };
  const vaultJsonText = fromFile('vault.json');
  const vaultJson = vaultJsonText
    ? (JSON.parse(vaultJsonText) as { url: string; apiFingerprint?: string | null })
    : undefined;
  const url = flags.url ?? process.env.HAVEN_URL ?? vaultJson?.url;
  const token = flags.token ?? process.env.HAVEN_TOKEN ?? fromFile('admin.token')?.trim();
  if (!url) {
    throw new HavenError(
      'bad_request',
      `No vault to talk to: pass --url, set HAVEN_URL, or run 'haven up' (looked in ${dataDir}/vault.json)`,
    );
  }
  if (!token) {
    throw new HavenError(
      'unauthenticated',
      `No API token: pass --token, set HAVEN_TOKEN, or use --data with an admin.token`,
    );
  }
  const base = url.replace(/\/$/, '');
  if (!base.startsWith('https:')) return { url: base, token };
  const origin = new URL(base).origin;
  const configText = fromFile(CLI_CONFIG);
  const config: CliConfig = configText ? (JSON.parse(configText) as CliConfig) : { pins: {} };
  if (flags.fingerprint && config.pins[origin] !== flags.fingerprint) {
    config.pins[origin] = flags.fingerprint;
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(dataDir, CLI_CONFIG), `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  }
  const fromVaultJson =
    vaultJson && new URL(vaultJson.url).origin === origin ? vaultJson.apiFingerprint : undefined;
  const fingerprint =
    flags.fingerprint || process.env.HAVEN_FINGERPRINT || fromVaultJson || config.pins[origin];
  if (!fingerprint) {
    throw new HavenError(
      'bad_request',
      `No fingerprint for the vault at ${origin}: pass --fingerprint (the vault prints it at start; it is saved in ${join(dataDir, CLI_CONFIG)} for later calls) or set HAVEN_FINGERPRINT`,
      { field: 'fingerprint' },
    );
  }
  return { url: base, token, fingerprint };
}

/** A thin REST client: JSON in, JSON out, the vault's error shape turned back into HavenError. */
export class ApiClient {
  readonly connection: Connection;
  readonly #fetch: PinnedFetch;
  constructor(connection: Connection) {
    this.connection = connection;
    this.#fetch = connection.fingerprint ? pinnedFetch(connection.fingerprint) : fetch;
  }

  async request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    let response: Response;
    try {
      response = await this.#fetch(`${this.connection.url}/api/v1${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.connection.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (error) {
      if (error instanceof HavenError) throw error;
      throw new HavenError(
        'unreachable',
        `Cannot reach the vault at ${this.connection.url}: ${(error as Error).message}`,
      );
    }
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new HavenError(
        'internal',
        `The vault answered ${response.status} with non-JSON: ${text.slice(0, 200)}`,
      );
    }
    if (!response.ok) {
      const error = (
        json as { error?: { code: ErrorCode; message: string; details: Record<string, unknown> } }
      ).error;
      throw new HavenError(
        error?.code ?? 'internal',
        error?.message ?? `HTTP ${response.status}`,
        error?.details ?? {},
      );
    }
    return json as T;
  }

  /** Server-sent events of a streaming GET, as they come, until the vault ends the stream. */
  async *events(path: string): AsyncGenerator<{ event: string; data: string }> {
    let response: Response;
    try {
      response = await this.#fetch(`${this.connection.url}/api/v1${path}`, {
        headers: { authorization: `Bearer ${this.connection.token}`, accept: 'text/event-stream' },
      });
    } catch (error) {
      if (error instanceof HavenError) throw error;
      throw new HavenError(
        'unreachable',
        `Cannot reach the vault at ${this.connection.url}: ${(error as Error).message}`,
      );
    }
    if (!response.ok || response.body === null) {
      const body = (await response.json().catch(() => ({}))) as {
        error?: { code: ErrorCode; message: string; details: Record<string, unknown> };
      };
      throw new HavenError(
        body.error?.code ?? 'internal',
        body.error?.message ?? `HTTP ${response.status}`,
        body.error?.details ?? {},
      );
    }
    const decoder = new TextDecoder();
    let buffered = '';
    for await (const chunk of response.body) {
      buffered += decoder.decode(chunk as Uint8Array, { stream: true });
      for (let end = buffered.indexOf('\n\n'); end >= 0; end = buffered.indexOf('\n\n')) {
        const block = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
        }
        yield { event, data: data.join('\n') };
      }
    }
  }

  get<T = unknown>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }
  post<T = unknown>(path: string, body: unknown = {}): Promise<T> {
    return this.request<T>('POST', path, body);
  }
  patch<T = unknown>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PATCH', path, body);
  }
  delete<T = unknown>(path: string): Promise<T> {
    return this.request<T>('DELETE', path);
  }
}
