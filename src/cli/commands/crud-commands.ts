import { type Command, type CommandArgs, type OptionSpec, positional, vaultCommand } from '../command.ts';
import { type Output, printJson, printRecord, printTable } from '../output.ts';

/** Prints a list as a table, or as JSON with --json. */
export function list(out: Output, items: unknown[], columns: string[]): number {
  if (out.json) printJson(out, items);
  else printTable(out, items as Record<string, unknown>[], columns);
  return 0;
}

/** Prints an item as a record (only `keys`, when given), or as JSON with --json. */
export function show(out: Output, item: unknown, keys?: string[]): number {
  if (out.json) printJson(out, item);
  else printRecord(out, item as Record<string, unknown>, keys);
  return 0;
}

interface ListSpec {
  summary: string;
  options?: OptionSpec;
  /** Appended to the collection's path: '?state=…', or '' for all. */
  query?: (args: CommandArgs) => string;
  columns: string[];
  /** The table's rows, when they are not the items themselves; --json prints the items. */
  rows?: (items: never[]) => Record<string, unknown>[];
}

interface ShowSpec {
  summary: string;
  /** Prints the item; the default is `show`. */
  print?: (out: Output, item: never) => number;
}

type Examples = [string, ...string[]];

interface CreateSpec {
  summary: string;
  examples: Examples;
  usage?: string;
  options?: OptionSpec;
  /** Where to post; the default is the collection. */
  path?: string;
  body: (args: CommandArgs) => unknown;
  /** Prints the created item; the default is `show`. */
  print?: (out: Output, item: never) => number;
}

interface UpdateSpec {
  summary: string;
  examples: Examples;
  options: OptionSpec;
  /** The PATCH body: only the fields given. */
  body: (args: CommandArgs) => unknown;
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
  const itemPath = (args: CommandArgs) => `/${plural}/${encodeURIComponent(positional(args, 0, singular))}`;
  const commands: Partial<Record<Verb, Command>> = {};
  const { list: listSpec, show: showSpec, create, update, delete: remove } = resource;
  if (listSpec) {
    commands.list = vaultCommand({
      name: `${plural} list`,
      summary: listSpec.summary,
      options: listSpec.options,
      examples: [`haven ${plural} list`],
      run: async (args, { client, out }) => {
        const response = await client.get<Record<string, never[]>>(
          `/${plural}${listSpec.query?.(args) ?? ''}`,
        );
        const items = response[plural] as never[];
        if (out.json || !listSpec.rows) return list(out, items, listSpec.columns);
        printTable(out, listSpec.rows(items), listSpec.columns);
        return 0;
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
        const item = await client.get<never>(itemPath(args));
        return showSpec.print ? showSpec.print(out, item) : show(out, item);
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
        const item = await client.post<never>(create.path ?? `/${plural}`, await create.body(args));
        return create.print ? create.print(out, item) : show(out, item);
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
        return show(out, await client.patch(itemPath(args), body));
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
        await client.delete(itemPath(args));
        if (remove.done && !out.json) out.write(`${remove.done}\n`);
        return 0;
      },
    });
  }
  return commands as { [K in Verb & keyof D]: Command };
}
