import { readFile, stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Context, Hono } from 'hono';

/** Where the portal is built (by `haven up` when its sources changed, or `npm run build:portal`). */
export const DEFAULT_PORTAL_DIR = fileURLToPath(new URL('../../portal/dist', import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.woff2': 'font/woff2',
};

/**
 * The portal must never reach another host: the browser enforces
 * that with this policy. Inline styles stay allowed for React's style props.
 */
const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

/**
 * Serves the built portal (a single-page app) beside the API: files from
 * `dir`, and index.html for any other non-API path so deep links work.
 * index.html is never cached (it names the current hashed assets); the
 * hashed assets are cached for good.
 */
export function servePortal(app: Hono, dir: string): void {
  const root = resolve(dir);
  app.on(['GET', 'HEAD'], '*', async (c, next) => {
    const path = c.req.path;
    if (path === '/api' || path.startsWith('/api/')) return next();
    let relative: string;
    try {
      relative = decodeURIComponent(path);
    } catch {
      return c.text('Bad path', 400);
    }
    const file = resolve(join(root, relative));
    if (file !== root && !file.startsWith(root + sep)) return c.text('Not found', 404);
    if (relative !== '/' && relative !== '/index.html' && (await isFile(file))) {
      const immutable = relative.startsWith('/assets/');
      return send(c, file, immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
    }
    // A missing asset is a 404, not the app: a stale index.html must fail loudly.
    if (relative.startsWith('/assets/') || extname(relative) !== '') return c.text('Not found', 404);
    const index = join(root, 'index.html');
    if (!(await isFile(index))) {
      return c.html(
        '<!doctype html><title>Haven</title><p>The portal is not built. Run <code>npm ci</code>, then <code>npm start</code> (it builds the portal), or <code>npm run build:portal</code>, and reload; the REST API is at <code>/api/v1</code>.</p>',
        503,
      );
    }
    return send(c, index, 'no-store');
  });
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function send(c: Context, file: string, cacheControl: string): Promise<Response> {
  const body = await readFile(file);
  const headers = new Headers({
    ...SECURITY_HEADERS,
    'Content-Type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream',
    'Content-Length': String(body.byteLength),
    'Cache-Control': cacheControl,
  });
  return new Response(c.req.method === 'HEAD' ? null : body, { status: 200, headers });
}
