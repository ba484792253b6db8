import type { ApiClient } from '../../client/api-client.ts';
import {
  type Command,
  type CommandArgs,
  type OptionSpec,
  positional,
  resolveOptionRefs,
  tableOptions,
  vaultCommand,
} from '../command.ts';
import { type Column, type Output, printJson, printRecord, printTable } from '../output.ts';
import { type Collection, isCollection, type Names, nameLookup, resolveRef } from '../resolve-ref.ts';

/** Prints a list as a table, or as JSON with --json. */
export function list<T>(out: Output, items: readonly T[], columns: readonly Column<T>[]): number {
  if (out.json) printJson(out, items);
  else printTable(out, items, columns);
  return 0;
}

/** Prints an item as labelled lines, or as JSON with --json. */
export function show(out: Output, item: unknown, entries: readonly (readonly [string, unknown])[]): number {
  if (out.json) printJson(out, item);
  else printRecord(out, entries);
  return 0;
}

interface ListSpec {
  summary: string;
  options?: OptionSpec;
  /** Appended to the collection's path: '?state=…', or '' for all. */
  query?: (args: CommandArgs, client: ApiClient) => string | Promise<string>;
  /** Collections whose names the table shows instead of ids. */
  names?: readonly Collection[];
  columns: (names: Names) => Column<never>[];
}

interface ShowSpec {
  summary: string;
  /** Collections whose names `print` shows instead of ids. */
  names?: readonly Collection[];
  /** What else the human view shows, asked for beside the item (e.g. its proof at `${itemPath}/proof`). */
  related?: (client: ApiClient, itemPath: string) => Promise<unknown>;
  print: (out: Output, item: never, names: Names, related: never) => number;
}

type Examples = [string, ...string[]];

interface CreateSpec {
  summary: string;
  examples: Examples;
  /** Options that name other objects: a short id given there is taken to the full one. */
  refs?: Record<string, Collection>;
  usage?: string;
  options?: OptionSpec;
  /** Where to post; the default is the collection. */
  path?: string;
  body: (args: CommandArgs) => unknown;
  /** Prints the created item. */
  print: (out: Output, item: never) => number;
}

interface UpdateSpec {
  summary: string;
  examples: Examples;
  options: OptionSpec;
  /** The PATCH body: only the fields given. */
  body: (args: CommandArgs) => unknown;
  print: (out: Output, item: never) => number;
}

interface DeleteSpec {
  summary: string;
  /** The command's verb, when not 'delete'. */
  verb?: string;
  /** Printed after deleting, unless --json. */
  done?: string;
}

type Verb = 'list' | 'show' | 'create' | 'update' | 'delete';

export interface ResourceDescription {
  /** The command group and the API collection: `policies` is `haven policies …` on /policies. */
  plural: string;
  /** Names the id argument: in upper case in the usage, as is when it is missing. */
  singular: string;
  /** A typical id or name, for the examples of show and delete. */
  example: string;
  list?: ListSpec;
  show?: ShowSpec;
  create?: CreateSpec;
  update?: UpdateSpec;
  delete?: DeleteSpec;
}

/**
 * The list, show, create, update and delete commands of a REST collection,
 * one for each spec in the description; callers place them among their own
 * commands (the order is the order of `haven --help`).
 */
export function crudCommands<const D extends ResourceDescription>(
  resource: D,
): { [K in Verb & keyof D]: Command } {
  const { plural, singular, example } = resource;
  const usage = singular.toUpperCase().replaceAll(' ', '-');
  const itemPath = async (client: ApiClient, args: CommandArgs) => {
    const text = positional(args, 0, singular);
    const id = isCollection(plural) ? await resolveRef(client, plural, text) : text;
    return `/${plural}/${encodeURIComponent(id)}`;
  };
  const commands: Partial<Record<Verb, Command>> = {};
  const { list: listSpec, show: showSpec, create, update, delete: remove } = resource;
  if (listSpec) {
    commands.list = vaultCommand({
      name: `${plural} list`,
      summary: listSpec.summary,
      options: { ...listSpec.options, ...tableOptions },
      examples: [`haven ${plural} list`],
      run: async (args, { client, out }) => {
        const response = await client.get<Record<string, never[]>>(
          `/${plural}${(await listSpec.query?.(args, client)) ?? ''}`,
        );
        const items = response[plural] as never[];
        if (out.json) return list(out, items, []);
        return list(out, items, listSpec.columns(await nameLookup(client, listSpec.names ?? [])));
      },
    });
  }
  if (showSpec) {
    commands.show = vaultCommand({
      name: `${plural} show`,
      summary: showSpec.summary,
      usage,
      examples: [`haven ${plural} show ${example}`],
      run: async (args, { client, out }) => {
        const path = await itemPath(client, args);
        const item = await client.get<never>(path);
        const names = await nameLookup(client, out.json ? [] : (showSpec.names ?? []));
        const related = out.json ? undefined : await showSpec.related?.(client, path);
        return showSpec.print(out, item, names, related as never);
      },
    });
  }
  if (create) {
    commands.create = vaultCommand({
      name: `${plural} create`,
      summary: create.summary,
      usage: create.usage,
      options: create.options,
      examples: create.examples,
      run: async (args, { client, out }) => {
        const resolved = await resolveOptionRefs(client, args, create.refs ?? {});
        const item = await client.post<never>(create.path ?? `/${plural}`, await create.body(resolved));
        return create.print(out, item);
      },
    });
  }
  if (update) {
    commands.update = vaultCommand({
      name: `${plural} update`,
      summary: update.summary,
      usage,
      options: update.options,
      examples: update.examples,
      run: async (args, { client, out }) => {
        const body = update.body(args);
        return update.print(out, await client.patch<never>(await itemPath(client, args), body));
      },
    });
  }
  if (remove) {
    commands.delete = vaultCommand({
      name: `${plural} ${remove.verb ?? 'delete'}`,
      summary: remove.summary,
      usage,
      examples: [`haven ${plural} ${remove.verb ?? 'delete'} ${example}`],
      run: async (args, { client, out }) => {
        await client.delete(await itemPath(client, args));
        if (remove.done && !out.json) out.write(`${remove.done}\n`);
        return 0;
      },
    });
  }
  return commands as { [K in Verb & keyof D]: Command };
}
