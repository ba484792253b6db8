import './runtime-settings.ts';
import { parseArgs } from 'node:util';
import { HavenError } from '../errors/index.ts';
import { restrictUmask } from '../storage/private-files.ts';
import type { Command, OptionSpec } from './command.ts';
import { COMMANDS } from './commands/index.ts';
import { didYouMean } from './did-you-mean.ts';

function help(): string {
  const width = Math.max(...COMMANDS.map((c) => `${c.name} ${c.usage ?? ''}`.length));
  const lines = COMMANDS.map((c) => `  haven ${`${c.name} ${c.usage ?? ''}`.padEnd(width)}  ${c.summary}`);
  return [
    'Haven: site recovery for QEMU/KVM virtual machines',
    '',
    'Usage: haven COMMAND [options]',
    '',
    ...lines,
    '',
    'Commands that talk to a vault take --url, --token (or HAVEN_URL, HAVEN_TOKEN, or --data DIR of `haven up`) and --json.',
    '`haven COMMAND --help` describes a command and its options; see docs/cli.md.',
    '',
  ].join('\n');
}

function usageLine(command: Command): string {
  return `haven ${command.name}${command.usage ? ` ${command.usage}` : ''}${command.options ? ' [options]' : ''}`;
}

/** `--name VALUE` as help shows it. */
function optionLabel(name: string, option: OptionSpec[string]): string {
  return `--${name}${option.type === 'string' ? ` ${option.value ?? 'VALUE'}` : ''}`;
}

/** A command's --help: usage, summary, every option with its description, examples. */
export function commandHelp(command: Command): string {
  const options = Object.entries(command.options ?? {});
  const width = Math.max(0, ...options.map(([n, o]) => optionLabel(n, o).length));
  return [
    `Usage: ${usageLine(command)}`,
    '',
    `${command.summary}`,
    ...(options.length > 0
      ? [
          '',
          'Options:',
          ...options.map(
            ([n, o]) =>
              `  ${optionLabel(n, o).padEnd(width)}  ${o.description}${o.multiple ? ' (repeatable)' : ''}`,
          ),
        ]
      : []),
    '',
    command.examples.length > 1 ? 'Examples:' : 'Example:',
    ...command.examples.map((e) => `  ${e}`),
    ...(command.exitCodes
      ? [
          '',
          'Exit codes (besides 0 success, 1 refused or failed, 2 bad usage):',
          ...command.exitCodes.map((e) => `  ${e.code}  ${e.meaning}`),
        ]
      : []),
    '',
  ].join('\n');
}

/** Longest command name that the argument words start with ('machines list' before 'machines'). */
function find(argv: string[]): { command: Command; rest: string[] } | null {
  let best: { command: Command; rest: string[] } | null = null;
  for (const command of COMMANDS) {
    const words = command.name.split(' ');
    if (
      words.every((w, i) => argv[i] === w) &&
      (!best || words.length > best.command.name.split(' ').length)
    ) {
      best = { command, rest: argv.slice(words.length) };
    }
  }
  // `haven vault bakup` is a mistyped `vault backup`, not `haven vault` with an argument it does not take.
  const next = best?.rest[0];
  if (
    best &&
    !best.command.usage &&
    next !== undefined &&
    !next.startsWith('-') &&
    COMMANDS.some((c) => c.name.startsWith(`${best.command.name} `))
  ) {
    return null;
  }
  return best;
}

/** One line for a command line that names no command: the closest command, or the subcommands of a group. */
function unknownCommand(argv: string[]): string {
  const words = argv.filter((a) => !a.startsWith('-'));
  const typed = words.join(' ');
  const group = COMMANDS.filter((c) => c.name.startsWith(`${typed} `)).map((c) => c.name);
  if (group.length > 0) {
    return `haven: '${typed}' needs a subcommand: ${group.map((n) => n.slice(typed.length + 1)).join(', ')}; see haven --help\n`;
  }
  // Compare like with like: three typed words with the three-word commands, then two, then one.
  for (const n of [3, 2, 1]) {
    if (words.length < n) continue;
    const names = COMMANDS.map((c) => c.name).filter((name) => name.split(' ').length === n);
    const compared = words.slice(0, n).join(' ');
    const suggestion = didYouMean(compared, names);
    if (suggestion) {
      return `haven: unknown command '${compared}'; did you mean '${suggestion}'? See \`haven --help\`\n`;
    }
  }
  return `haven: unknown command '${words[0] ?? argv[0]}'. See \`haven --help\`\n`;
}

/** A usage mistake the parser found (unknown flag, missing value), said in the command's terms. */
function badOptions(command: Command, rest: string[]): string | null {
  const options = command.options ?? {};
  const { tokens } = parseArgs({
    args: rest,
    options: parserOptions(options),
    allowPositionals: true,
    strict: false,
    tokens: true,
  });
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    const option = options[token.name];
    const usage = `usage: ${usageLine(command)} (see haven ${command.name} --help)`;
    if (!option) {
      const guess = didYouMean(token.name, Object.keys(options));
      return `haven ${command.name}: unknown option '${token.rawName}'${guess ? `; did you mean --${guess}?` : ''}\n${usage}\n`;
    }
    if (option.type === 'string' && token.value === undefined) {
      return `haven ${command.name}: ${token.rawName} needs a value (${optionLabel(token.name, option)}: ${option.description})\n${usage}\n`;
    }
    if (option.type === 'boolean' && token.value !== undefined) {
      return `haven ${command.name}: ${token.rawName} takes no value\n${usage}\n`;
    }
  }
  return null;
}

/** What node:util's parser needs of the declarations. */
function parserOptions(options: OptionSpec): NonNullable<Parameters<typeof parseArgs>[0]>['options'] {
  return Object.fromEntries(
    Object.entries(options).map(([name, o]) => [
      name,
      { type: o.type, ...(o.multiple ? { multiple: true } : {}) },
    ]),
  );
}

export async function main(argv: string[]): Promise<number> {
  // Whatever a command writes (a vault, a host, a backup) is this user's only.
  restrictUmask();
  if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h') {
    process.stdout.write(help());
    return argv.length === 0 ? 2 : 0;
  }
  const found = find(argv);
  if (!found) {
    process.stderr.write(unknownCommand(argv));
    return 2;
  }
  const { command, rest } = found;
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(commandHelp(command));
    return 0;
  }
  const mistake = badOptions(command, rest);
  if (mistake) {
    process.stderr.write(mistake);
    return 2;
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: rest,
      options: parserOptions(command.options ?? {}),
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    process.stderr.write(
      `haven ${command.name}: ${(error as Error).message}\nusage: ${usageLine(command)}\n`,
    );
    return 2;
  }
  try {
    return (await command.run({ values: parsed.values, positionals: parsed.positionals })) ?? 0;
  } catch (error) {
    if (error instanceof HavenError) {
      const json = parsed.values.json === true;
      if (json) process.stdout.write(`${JSON.stringify(error.toJSON(), null, 2)}\n`);
      process.stderr.write(`haven ${command.name}: ${error.message}\n`);
      return error.code === 'bad_request' ? 2 : 1;
    }
    throw error;
  }
}

/** A reader that went away (`haven machines list | head -1`) has all it wanted: end quietly. */
function exitQuietlyOnClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
}

if (import.meta.main) {
  exitQuietlyOnClosedPipe(process.stdout);
  exitQuietlyOnClosedPipe(process.stderr);
  process.exitCode = await main(process.argv.slice(2));
}
