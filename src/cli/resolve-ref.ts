import type { ApiClient } from '../client/api-client.ts';
import { HavenError } from '../errors/index.ts';

/** The collections whose objects the CLI accepts by short id (and by name where they have one). */
const COLLECTIONS = {
  machines: { what: 'machine', path: '/machines?limit=10000', key: 'machines' },
  jobs: { what: 'job', path: '/jobs?limit=1000', key: 'jobs' },
  plans: { what: 'plan', path: '/plans', key: 'plans' },
  policies: { what: 'policy', path: '/policies', key: 'policies' },
  hosts: { what: 'host', path: '/hosts', key: 'hosts' },
  sites: { what: 'site', path: '/sites', key: 'sites' },
  tokens: { what: 'token', path: '/tokens', key: 'tokens' },
  'script-runs': { what: 'script run', path: '/script-runs?limit=1000', key: 'runs' },
} as const;

export type Collection = keyof typeof COLLECTIONS;

/** How the CLI prints an id in tables and messages; `resolveRef` takes it back. */
export const SHORT_ID_LENGTH = 8;

export function shortId(id: string): string {
  return id.slice(0, SHORT_ID_LENGTH);
}

const FULL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ID_PREFIX = /^[0-9a-f]{4,}(?:-[0-9a-f]*)*$/i;

interface Named {
  id: string;
  name?: string;
}

/**
 * What the vault should be asked for: a full id or a name as typed, the full
 * id of the one object whose id starts with a short id. A prefix that several
 * ids start with is refused, naming them.
 */
export async function resolveRef(client: ApiClient, collection: Collection, text: string): Promise<string> {
  if (FULL_UUID.test(text) || !ID_PREFIX.test(text)) return text;
  const { what, path, key } = COLLECTIONS[collection];
  const items = ((await client.get<Record<string, Named[]>>(path))[key] ?? []) as Named[];
  return pickByPrefix(items, text, what);
}

/** The object `text` names among `items`: its name, else the one id it begins. */
export function pickByPrefix(items: readonly Named[], text: string, what: string): string {
  if (items.some((item) => item.name === text || item.id === text)) return text;
  const prefix = text.toLowerCase();
  const matches = items.filter((item) => item.id.toLowerCase().startsWith(prefix));
  if (matches.length === 1) return matches[0]!.id;
  if (matches.length > 1) {
    const shown = matches.slice(0, 5).map((m) => `${m.id}${m.name ? ` (${m.name})` : ''}`);
    throw new HavenError(
      'bad_request',
      `${what} '${text}' is ambiguous: ${matches.length} ids start with it (${shown.join(', ')}${matches.length > 5 ? ', …' : ''}); give more of the id`,
      { field: what, candidates: matches.map((m) => m.id) },
    );
  }
  return text;
}

export function isCollection(name: string): name is Collection {
  return Object.hasOwn(COLLECTIONS, name);
}

/** The name of an object by id, for tables (its short id when it has no name or is not found). */
export type Names = (collection: Collection, id: string | null | undefined) => string | null;

/** Fetches the collections' names once, for a table that shows names instead of ids. */
export async function nameLookup(client: ApiClient, collections: readonly Collection[]): Promise<Names> {
  const byCollection = new Map<Collection, Map<string, string>>();
  await Promise.all(
    collections.map(async (collection) => {
      const { path, key } = COLLECTIONS[collection];
      const items = ((await client.get<Record<string, Named[]>>(path))[key] ?? []) as Named[];
      byCollection.set(collection, new Map(items.map((i) => [i.id, i.name ?? shortId(i.id)])));
    }),
  );
  return (collection, id) => (id ? (byCollection.get(collection)?.get(id) ?? shortId(id)) : null);
}
