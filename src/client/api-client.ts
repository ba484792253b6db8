import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ErrorCode } from '../errors/index.ts';
import { HavenError } from '../errors/index.ts';

export interface Connection {
  url: string;
  token: string;
}

/**
 * Where the CLI finds its vault: --url/--token, then HAVEN_URL/HAVEN_TOKEN,
 * then the files `haven up` leaves in its data directory (vault.json, admin.token).
 */
export function resolveConnection(flags: { url?: string; token?: string; data?: string }): Connection {
  const dataDir = flags.data ?? process.env.HAVEN_DATA ?? '.haven';
  const fromFile = (file: string): string | undefined => {
    try {
      return readFileSync(join(dataDir, file), 'utf8');
    } catch {
      return undefined;
    }
  };
  const vaultJson = fromFile('vault.json');
  const url =
    flags.url ??
    process.env.HAVEN_URL ??
    (vaultJson ? (JSON.parse(vaultJson) as { url: string }).url : undefined);
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
  return { url: url.replace(/\/$/, ''), token };
}

/** A thin REST client: JSON in, JSON out, the vault's error shape turned back into HavenError. */
export class ApiClient {
  readonly connection: Connection;
  constructor(connection: Connection) {
    this.connection = connection;
  }

  async request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    let response: Response;
    try {
      response = await fetch(`${this.connection.url}/api/v1${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.connection.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (error) {
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
