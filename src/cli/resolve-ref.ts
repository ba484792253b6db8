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
  drills: { what: 'drill', path: '/drills?limit=1000', key: 'drills' },
  'drill-schedules': { what: 'drill schedule', path: '/drill-schedules', key: 'schedules' },
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
  return pickByPrefix(await listed(client, collection), text, COLLECTIONS[collection].what);
}

/** The object `text` names among `items`: its name, else the one id it begins. */
export function pickByPrefix(items: readonly Named[], text: string, what: string): string {
  if (items.some((item) => item.name === text || item.id === text)) return text;
  return onlyPrefixed(items, text, what)?.id ?? text;
}

/** The one item whose id starts with `text`; none is undefined, several are refused naming them. */
function onlyPrefixed(items: readonly Named[], text: string, what: string): Named | undefined {
  const prefix = text.toLowerCase();
  const matches = items.filter((item) => item.id.toLowerCase().startsWith(prefix));
  if (matches.length > 1) {
    throw ambiguous(
      what,
      text,
      matches.map((m) => m.id),
      matches.map((m) => `${m.id}${m.name ? ` (${m.name})` : ''}`),
    );
  }
  return matches[0];
}

/**
 * The full id of the object `text` names among `items` (by name, id or short
 * id), for API parameters that take ids only (list filters); none is refused,
 * naming what there is.
 */
export function pickId(items: readonly Named[], text: string, what: string): string {
  const found =
    items.find((item) => item.id === text || item.name === text) ??
    (ID_PREFIX.test(text) ? onlyPrefixed(items, text, what) : undefined);
  if (found) return found.id;
  const known = items.slice(0, 10).map((i) => i.name ?? shortId(i.id));
  throw new HavenError(
    'not_found',
    `${what} '${text}' does not exist (${items.length === 0 ? 'there are none' : `there are ${known.join(', ')}${items.length > 10 ? ', …' : ''}`})`,
    { kind: what, id: text },
  );
}

/** `pickId` over `collection` as the vault lists it. */
export async function resolveId(client: ApiClient, collection: Collection, text: string): Promise<string> {
  return pickId(await listed(client, collection), text, COLLECTIONS[collection].what);
}

async function listed(client: ApiClient, collection: Collection): Promise<Named[]> {
  const { path, key } = COLLECTIONS[collection];
  return ((await client.get<Record<string, Named[]>>(path))[key] ?? []) as Named[];
}

function ambiguous(what: string, text: string, candidates: string[], shown: string[]): HavenError {
  return new HavenError(
    'bad_request',
    `${what} '${text}' is ambiguous: ${candidates.length} ids start with it (${shown.slice(0, 5).join(', ')}${candidates.length > 5 ? ', …' : ''}); give more of the id`,
    { field: what, candidates },
  );
}

interface PointIdentity {
  id: string;
  machineId: string;
}

/**
 * How the CLI prints a recovery point of a machine: its id without the
 * machine id every point of that machine starts with (`disk0@42`, `@marker`).
 */
export function pointLabel(point: PointIdentity): string {
  if (!point.id.startsWith(point.machineId)) return point.id;
  const rest = point.id.slice(point.machineId.length);
  return rest.startsWith('/') ? rest.slice(1) : rest;
}

/**
 * The id of the point `text` names among one machine's `points`: its id or
 * label, else the one point whose id or label begins with it. A prefix that
 * several points begin with is refused, naming them; one none begins with is
 * left for the vault to refuse.
 */
export function pickPoint(points: readonly PointIdentity[], text: string): string {
  const exact = points.find((p) => p.id === text || pointLabel(p) === text);
  if (exact) return exact.id;
  const prefix = text.toLowerCase();
  const matches = points.filter(
    (p) => p.id.toLowerCase().startsWith(prefix) || pointLabel(p).toLowerCase().startsWith(prefix),
  );
  if (matches.length === 1) return matches[0]!.id;
  if (matches.length > 1) {
    throw ambiguous(
      'recovery point',
      text,
      matches.map((p) => p.id),
      matches.map(pointLabel),
    );
  }
  return text;
}

/**
 * `pickPoint` over the points of `machines` (names, ids or full ids) as the
 * vault lists them: one machine's, or every machine of a plan.
 */
export async function resolvePoint(
  client: ApiClient,
  machines: readonly string[],
  text: string,
): Promise<string> {
  const listed = await Promise.all(
    machines.map((machine) =>
      client.get<{ recoveryPoints: PointIdentity[] }>(
        `/machines/${encodeURIComponent(machine)}/recovery-points`,
      ),
    ),
  );
  return pickPoint(
    listed.flatMap((l) => l.recoveryPoints),
    text,
  );
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
      const items = await listed(client, collection);
      byCollection.set(collection, new Map(items.map((i) => [i.id, i.name ?? shortId(i.id)])));
    }),
  );
  return (collection, id) => (id ? (byCollection.get(collection)?.get(id) ?? shortId(id)) : null);
}
