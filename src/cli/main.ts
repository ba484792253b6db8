import './runtime-settings.ts';
import { parseArgs } from 'node:util';
import { HavenError } from '../errors/index.ts';
import { restrictUmask } from '../storage/private-files.ts';
import type { Command } from './command.ts';
import { COMMANDS } from './commands/index.ts';

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
    'See docs/cli.md.',
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
  return best;
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
    process.stderr.write(`haven: unknown command '${argv.join(' ')}'\n\n${help()}`);
    return 2;
  }
  const { command, rest } = found;
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`haven ${command.name} ${command.usage ?? ''}\n  ${command.summary}\n`);
    const options = Object.entries(command.options ?? {}).map(
      ([n, o]) => `  --${n}${o.type === 'string' ? ' VALUE' : ''}`,
    );
    if (options.length > 0) process.stdout.write(`\nOptions:\n${options.join('\n')}\n`);
    return 0;
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: rest, options: command.options ?? {}, allowPositionals: true, strict: true });
  } catch (error) {
    process.stderr.write(`haven ${command.name}: ${(error as Error).message}\n`);
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

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
