import type { Embedded } from '../app/start-embedded.ts';

export interface ApiAnswer<T> {
  status: number;
  body: T;
}

/** Calls an embedded vault's REST API in process (Hono's app.request) with its admin token. */
export function embeddedApi(up: () => Embedded) {
  return async <T>(method: string, path: string, body?: unknown): Promise<ApiAnswer<T>> => {
    const response = await up().vault.app.request(`/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${up().adminToken}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json().catch(() => null)) as T };
  };
}
