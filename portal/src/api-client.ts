import type { Job } from '../../src/domain/model.ts';

export interface ApiErrorBody {
  code: string;
  message: string;
  details: Record<string, unknown>;
}

/** The vault's `{ error: { code, message, details } }`, kept whole so forms can show details. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: Record<string, unknown>;

  constructor(status: number, body: ApiErrorBody) {
    super(body.message);
    this.name = 'ApiError';
    this.status = status;
    this.code = body.code;
    this.details = body.details ?? {};
  }
}

/** Any failure of a request as an ApiError: one that never reached the vault has status 0, code 'network'. */
export function asApiError(e: unknown): ApiError {
  return e instanceof ApiError ? e : new ApiError(0, { code: 'network', message: String(e), details: {} });
}

export type JobWithCancel = Job & { cancel: { cancellable: boolean; reason: string | null } };

/** A client for /api/v1 with one bearer token; every request stays on the vault's own origin. */
export class ApiClient {
  readonly token: string;
  /** Called on 401 so the app can sign out. */
  onUnauthenticated: (() => void) | null = null;

  constructor(token: string) {
    this.token = token;
  }

  get<T>(path: string, signal?: AbortSignal): Promise<T> {
    return this.request<T>('GET', path, undefined, signal);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  patch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PATCH', path, body);
  }

  async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const { status, text } = await this.send(method, path, body, signal);
    if (status === 204) return undefined as T;
    try {
      return (text ? JSON.parse(text) : null) as T;
    } catch {
      throw new ApiError(status, {
        code: 'bad_response',
        message: `The answer to ${method} ${path} is not JSON`,
        details: {},
      });
    }
  }

  /** A GET whose answer is a document, not JSON (a plan exported as YAML). */
  async getText(path: string): Promise<string> {
    return (await this.send('GET', path)).text;
  }

  /** One request; an answer other than 2xx becomes an ApiError with the vault's code and details. */
  private async send(
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<{ status: number; text: string }> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(`/api/v1${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      ...(signal ? { signal } : {}),
    });
    if (response.status === 204) return { status: 204, text: '' };
    const text = await response.text();
    if (!response.ok) {
      if (response.status === 401) this.onUnauthenticated?.();
      let json: unknown = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        // Not JSON: a proxy or a crash page; reported with the status.
      }
      const error = (json as { error?: ApiErrorBody } | null)?.error;
      throw new ApiError(
        response.status,
        error ?? {
          code: `http_${response.status}`,
          message: `${response.status} ${response.statusText}`,
          details: {},
        },
      );
    }
    return { status: response.status, text };
  }

  /**
   * Reads an API path's server-sent events until the stream ends. EventSource
   * cannot send an Authorization header, so this reads the stream with fetch
   * instead of putting the token in the URL (where logs and history would keep it).
   */
  async events(
    path: string,
    onEvent: (event: { name: string; data: string }) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const response = await fetch(`/api/v1${path}`, {
      headers: { authorization: `Bearer ${this.token}`, accept: 'text/event-stream' },
      signal,
    });
    if (!response.ok || !response.body) {
      if (response.status === 401) this.onUnauthenticated?.();
      const body = (await response.json().catch(() => null)) as { error?: ApiErrorBody } | null;
      throw new ApiError(
        response.status,
        body?.error ?? { code: `http_${response.status}`, message: response.statusText, details: {} },
      );
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n/g, '\n');
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        onEvent(parseEvent(buffer.slice(0, end)));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  /** Follows a job over server-sent events. */
  followJob(id: string, onJob: (job: JobWithCancel) => void, signal: AbortSignal): Promise<void> {
    return this.events(
      `/jobs/${encodeURIComponent(id)}/events`,
      (event) => {
        if (event.name === 'job' && event.data) onJob(JSON.parse(event.data) as JobWithCancel);
      },
      signal,
    );
  }
}

/** One SSE event block: `event:` names it, `data:` lines join with newlines. */
export function parseEvent(block: string): { name: string; data: string } {
  let name = 'message';
  const data: string[] = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
  }
  return { name, data: data.join('\n') };
}
