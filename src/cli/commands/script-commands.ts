import type { RegisteredScript, ScriptRunRecord } from '../../domain/model.ts';
import { type Command, positional, str, vaultCommand } from '../command.ts';
import { printJson, printRecord } from '../output.ts';
import { list } from './crud-commands.ts';

/** The registry of scripts plans may run, and the record of their runs. */
export const scriptCommands: Command[] = [
  vaultCommand({
    name: 'scripts list',
    summary: "List the scripts plans may name (executables an admin put in the vault's scripts folder)",
    examples: ['haven scripts list'],
    run: async (_args, { client, out }) => {
      const { dir, scripts } = await client.get<{ dir: string; scripts: RegisteredScript[] }>('/scripts');
      if (out.json) {
        printJson(out, { dir, scripts });
        return 0;
      }
      out.write(`scripts folder: ${dir}\n`);
      return list(
        out,
        scripts.map((s) => ({ ...s, usable: s.problem ?? 'yes' })),
        ['name', 'sizeBytes', 'modifiedAt', 'usable'],
      );
    },
  }),
  vaultCommand({
    name: 'scripts runs',
    summary: 'List script runs, newest first',
    examples: ['haven scripts runs --job 3f9c2a1b'],
    options: { job: { type: 'string', value: 'JOB', description: 'only the runs of this plan job' } },
    run: async (args, { client, out }) => {
      const job = str(args, 'job');
      const { runs } = await client.get<{ runs: ScriptRunRecord[] }>(
        `/script-runs${job ? `?jobId=${encodeURIComponent(job)}` : ''}`,
      );
      return list(out, runs, ['startedAt', 'planName', 'script', 'runAs', 'state', 'exitCode', 'id']);
    },
  }),
  vaultCommand({
    name: 'scripts output',
    summary: 'Show a script run and its output (operators and admins; viewers see how it ended)',
    usage: 'RUN',
    examples: ['haven scripts output 9a8b7c6d'],
    run: async (args, { client, out }) => {
      const run = await client.get<ScriptRunRecord>(
        `/script-runs/${encodeURIComponent(positional(args, 0, 'run'))}`,
      );
      if (out.json) {
        printJson(out, run);
        return 0;
      }
      const { output, ...record } = run as ScriptRunRecord & { output?: string };
      printRecord(out, record);
      out.write(
        output === undefined ? '(output shown to operators and admins only)\n' : `--- output ---\n${output}`,
      );
      if (output && !output.endsWith('\n')) out.write('\n');
      return 0;
    },
  }),
];
