import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HavenError } from '../errors/index.ts';
import type { Store } from '../store/index.ts';
import { API_TOKEN_PREFIX, hashSecret } from '../vault/token-secret.ts';
import { buildOpenApi } from './openapi.ts';
import {
  type Actor,
  DEFAULT_BODY_LIMIT_BYTES,
  parseInput,
  type RouteDefinition,
  roleAllows,
} from './route.ts';
import { servePortal } from './serve-portal.ts';

export interface ApiOptions {
  store: Store;
  routes: RouteDefinition[];
  version: string;
  /** Touching lastUsedAt on every request costs a write; do it at most this often per token. */
  touchIntervalMs?: number;
  /** Built portal (static files) served at `/`; none when absent. */
  portalDir?: string;
}

/**
 * The REST API under /api/v1. Authentication, role checks, input validation
 * and error mapping live here once; routes only declare what they need.
 */
export function createApi(options: ApiOptions): Hono {
  const { store, routes } = options;
  const app = new Hono();
  const openapi = buildOpenApi(routes, options.version);
  const lastTouched = new Map<string, number>();
  const touchInterval = options.touchIntervalMs ?? 60_000;

  app.onError((error, c) => {
    if (error instanceof HavenError) return c.json(error.toJSON(), error.status as 400);
    console.error('haven: unhandled API error:', error);
    return c.json(new HavenError('internal', 'Internal error; see the vault log').toJSON(), 500);
  });
  app.notFound((c) =>
    c.json(new HavenError('not_found', `No endpoint ${c.req.method} ${c.req.path}`).toJSON(), 404),
  );

  // The API's description is public, like its documentation: what it describes still needs a token.
  app.get('/api/v1/openapi.json', (c) => c.json(openapi));

  async function authenticate(
    header: string | undefined,
    access: RouteDefinition['access'],
  ): Promise<Actor | null> {
    if (access.kind === 'public') return null;
    const bearer = header?.match(/^Bearer\s+(\S+)$/i)?.[1];
    if (!bearer) {
      throw new HavenError('unauthenticated', 'A bearer token is required (Authorization: Bearer <token>)');
    }
    if (access.kind === 'enrolment') return null;
    if (!bearer.startsWith(API_TOKEN_PREFIX)) {
      throw new HavenError('unauthenticated', 'This endpoint needs an API token (hvn_…)');
    }
    const token = await store.tokens.getBySecretHash(hashSecret(bearer));
    if (!token) throw new HavenError('unauthenticated', 'Unknown or revoked API token');
    if (!roleAllows(token.role, access.role)) {
      throw new HavenError(
        'forbidden',
        `Token '${token.name}' has role ${token.role}; this needs role ${access.role} or higher`,
        { role: token.role, required: access.role },
      );
    }
    const now = Date.now();
    if (now - (lastTouched.get(token.id) ?? 0) > touchInterval) {
      lastTouched.set(token.id, now);
      await store.tokens.touch(token.id, new Date(now).toISOString());
    }
    return { tokenId: token.id, name: token.name, role: token.role };
  }

  for (const r of routes) {
    // Before authentication: the declared length is checked before anything is
    // read, and a body sent without one is read only up to the limit.
    const maxSize = r.maxBodyBytes ?? DEFAULT_BODY_LIMIT_BYTES;
    const limit = bodyLimit({
      maxSize,
      onError: () => {
        throw new HavenError(
          'payload_too_large',
          `The request body is larger than ${maxSize} bytes, the most ${r.method.toUpperCase()} /api/v1${r.path} accepts`,
          { field: 'body', maxBytes: maxSize },
        );
      },
    });
    app.on(r.method.toUpperCase(), `/api/v1${r.path}`, limit, async (c) => {
      const authorization = c.req.header('authorization');
      const actor = await authenticate(authorization, r.access);
      let body: unknown;
      if (r.body) {
        const text = await c.req.text();
        let raw: unknown = {};
        if (text.trim() !== '') {
          try {
            raw = JSON.parse(text);
          } catch {
            throw new HavenError('bad_request', 'The request body is not valid JSON', { field: 'body' });
          }
        }
        body = parseInput(r.body, raw, 'body');
      }
      const query = r.query ? parseInput(r.query, c.req.query(), 'query') : {};
      const result = await r.handler({
        body,
        query,
        params: c.req.param() as Record<string, string>,
        actor,
        bearer: authorization?.match(/^Bearer\s+(\S+)$/i)?.[1] ?? null,
        context: c,
      });
      if (result instanceof Response) return result;
      if (r.status === 204) return c.body(null, 204);
      return c.json(result as object, (r.status ?? 200) as 200);
    });
  }
  if (options.portalDir) servePortal(app, options.portalDir);
  return app;
}
