import { resolve } from 'node:path';
import { ApiClient, resolveConnection } from '../client/api-client.ts';
import { HavenError } from '../errors/index.ts';
import { lookupShareGroup, type ShareGroup } from '../storage/share-group.ts';
import { type Output, stdoutOutput } from './output.ts';
import { type Collection, resolveRef } from './resolve-ref.ts';

/** One option of a command: how it parses, and what `--help` and docs/cli.md say of it. */
export interface OptionDeclaration {
  type: 'string' | 'boolean';
  /** Repeatable: every occurrence is kept. */
  multiple?: boolean;
  /** What it does, in a phrase. */
  description: string;
  /** The value's placeholder in help (DURATION, SIZE, MACHINE, …); VALUE when not given. */
  value?: string;
}

export type OptionSpec = Record<string, OptionDeclaration>;

export interface CommandArgs {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

export interface Command {
  /** Words that select it, e.g. 'machines list'. */
  name: string;
  summary: string;
  usage?: string;
  options?: OptionSpec;
  /** Whole command lines, shown by --help: at least one. */
  examples: [string, ...string[]];
  /** Exit codes of its own, besides 0 success, 1 refused or failed, 2 bad usage. */
  exitCodes?: ExitCode[];
  run(args: CommandArgs): Promise<number | undefined>;
}

export interface ExitCode {
  code: number;
  meaning: string;
}

/** Options every command that talks to a vault understands. */
export const connectionOptions: OptionSpec = {
  url: {
    type: 'string',
    value: 'URL',
    description: "the vault's API address (default HAVEN_URL, or --data's vault.json)",
  },
  token: {
    type: 'string',
    value: 'TOKEN',
    description: "API token (default HAVEN_TOKEN, or --data's admin.token)",
  },
  data: {
    type: 'string',
    value: 'DIR',
    description: 'data folder of a local `haven up` or `haven vault` to connect to (default .haven)',
  },
  fingerprint: {
    type: 'string',
    value: 'SHA256',
    description: "expected fingerprint of the vault's self-signed TLS certificate",
  },
  json: { type: 'boolean', description: 'print JSON for scripts instead of tables' },
};

/** Options of a command that prints a table. */
export const tableOptions: OptionSpec = {
  wide: { type: 'boolean', description: 'add ids (and other long columns) to the table' },
};

/** A client for the vault the connection options name, and the output --json selects. */
export function connect(args: CommandArgs): { client: ApiClient; out: Output } {
  const client = new ApiClient(
    resolveConnection({
      url: str(args, 'url'),
      token: str(args, 'token'),
      data: str(args, 'data'),
      fingerprint: str(args, 'fingerprint'),
    }),
  );
  return { client, out: stdoutOutput(args.values.json === true, args.values.wide === true) };
}

/**
 * A command that talks to the vault: it takes the connection options besides
 * its own, and `run` gets the client and output `connect` makes.
 */
export function vaultCommand(spec: {
  name: string;
  summary: string;
  usage?: string | undefined;
  options?: OptionSpec | undefined;
  examples: [string, ...string[]];
  exitCodes?: ExitCode[] | undefined;
  run(args: CommandArgs, vault: { client: ApiClient; out: Output }): Promise<number>;
}): Command {
  return {
    name: spec.name,
    summary: spec.summary,
    ...(spec.usage ? { usage: spec.usage } : {}),
    options: spec.options ? { ...spec.options, ...connectionOptions } : connectionOptions,
    examples: spec.examples,
    ...(spec.exitCodes ? { exitCodes: spec.exitCodes } : {}),
    run: (args) => spec.run(args, connect(args)),
  };
}

export function str(args: CommandArgs, name: string): string | undefined {
  const v = args.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function required(args: CommandArgs, name: string): string {
  const v = str(args, name);
  if (v === undefined) throw new HavenError('bad_request', `--${name} is required`, { field: name });
  return v;
}

export function positional(args: CommandArgs, index: number, what: string): string {
  const v = args.positionals[index];
  if (v === undefined) throw new HavenError('bad_request', `missing ${what}`, { field: what });
  return v;
}

/** The positional at `index`: an object of `collection` by name, id or the short id the CLI prints. */
export function positionalRef(
  client: ApiClient,
  args: CommandArgs,
  index: number,
  what: string,
  collection: Collection,
): Promise<string> {
  return resolveRef(client, collection, positional(args, index, what));
}

/**
 * The args with each option of `refs` given (once or repeated) as `resolve`
 * makes it: by default its object's full id when it was a short id (names
 * stay, the API takes them); `resolveId` for parameters that take ids only.
 */
export async function resolveOptionRefs(
  client: ApiClient,
  args: CommandArgs,
  refs: Record<string, Collection>,
  resolve: typeof resolveRef = resolveRef,
): Promise<CommandArgs> {
  const values = { ...args.values };
  for (const [name, collection] of Object.entries(refs)) {
    const value = values[name];
    if (typeof value === 'string') values[name] = await resolve(client, collection, value);
    else if (Array.isArray(value)) {
      values[name] = await Promise.all(value.map((v) => resolve(client, collection, String(v))));
    }
  }
  return { values, positionals: args.positionals };
}

/** --data DIR (else the default), resolved here once: everything past the command line sees absolute paths. */
export function dataDirOption(args: CommandArgs, fallback: string): string {
  return resolve(str(args, 'data') ?? fallback);
}

/** --control-port N when given: it wins over the port saved with the vault's state (and is saved). */
export function controlPortOption(args: CommandArgs): { controlPort?: number } {
  const port = integer(str(args, 'control-port'), 'control-port');
  return port === undefined ? {} : { controlPort: port };
}

/** --share-group NAME: the group through which a hypervisor running as another user opens the disk sockets. */
export async function shareGroupOption(args: CommandArgs): Promise<{ shareGroup?: ShareGroup }> {
  const name = str(args, 'share-group');
  return name === undefined ? {} : { shareGroup: await lookupShareGroup(name) };
}

/** --libvirt URI: the host drives libvirt at URI (e.g. qemu:///system) instead of the built-in QEMU driver. */
export function libvirtOption(args: CommandArgs): { libvirt?: { uri: string } } {
  const uri = str(args, 'libvirt');
  if (uri === undefined) return {};
  if (!/^[a-z][a-z0-9+.-]*:\/\//.test(uri)) {
    throw new HavenError('bad_request', `--libvirt: '${uri}' is not a libvirt URI like qemu:///system`, {
      field: 'libvirt',
    });
  }
  return { libvirt: { uri } };
}

export function integer(text: string | undefined, field: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text))
    throw new HavenError('bad_request', `--${field}: '${text}' is not a whole number`, { field });
  return Number(text);
}
