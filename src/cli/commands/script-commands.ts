import type { RegisteredScript, ScriptRunRecord } from '../../domain/model.ts';
import { ago, formatBytes } from '../../text/human-units.ts';
import { type Command, positionalRef, str, tableOptions, vaultCommand } from '../command.ts';
import { printJson, printRecord } from '../output.ts';
import { resolveRef, shortId } from '../resolve-ref.ts';
import { list } from './crud-commands.ts';
import { between } from './machine-summary.ts';

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
      return list(out, scripts, [
        { header: 'Script', value: (s) => s.name },
        { header: 'Size', value: (s) => formatBytes(s.sizeBytes) },
        { header: 'Modified', value: (s) => ago(s.modifiedAt) },
        { header: 'Usable', value: (s) => s.problem ?? 'yes' },
      ]);
    },
  }),
  vaultCommand({
    name: 'scripts runs',
    summary: 'List script runs, newest first',
    examples: ['haven scripts runs --job 3f9c2a1b'],
    options: {
      job: { type: 'string', value: 'JOB', description: 'only the runs of this plan job' },
      ...tableOptions,
    },
    run: async (args, { client, out }) => {
      const given = str(args, 'job');
      const job = given === undefined ? undefined : await resolveRef(client, 'jobs', given);
      const { runs } = await client.get<{ runs: ScriptRunRecord[] }>(
        `/script-runs${job ? `?jobId=${encodeURIComponent(job)}` : ''}`,
      );
      return list(out, runs, [
        { header: 'Id', value: (r) => shortId(r.id) },
        { header: 'Started', value: (r) => ago(r.startedAt) },
        { header: 'Plan', value: (r) => r.planName },
        { header: 'Script', value: (r) => r.script },
        { header: 'Run as', value: (r) => r.runAs },
        { header: 'State', value: (r) => r.state },
        { header: 'Exit code', value: (r) => r.exitCode },
        { header: 'Full id', value: (r) => r.id, wide: true },
      ]);
    },
  }),
  vaultCommand({
    name: 'scripts output',
    summary: 'Show a script run and its output (operators and admins; viewers see how it ended)',
    usage: 'RUN',
    examples: ['haven scripts output 9a8b7c6d'],
    run: async (args, { client, out }) => {
      const run = await client.get<ScriptRunRecord>(
        `/script-runs/${encodeURIComponent(await positionalRef(client, args, 0, 'run', 'script-runs'))}`,
      );
      if (out.json) {
        printJson(out, run);
        return 0;
      }
      const { output, ...record } = run as ScriptRunRecord & { output?: string };
      printRecord(out, [
        ['Script run', `${record.script} ${shortId(record.id)}`],
        ['Plan', `${record.planName}, job ${shortId(record.jobId)}, step ${record.stepName}`],
        ['Run as', `${record.runAs}${record.runAsNote ? ` (${record.runAsNote})` : ''}`],
        ['Started', `${ago(record.startedAt)} by ${record.startedBy}`],
        ['State', record.state],
        ['Exit code', record.exitCode],
        ['Took', record.finishedAt ? between(record.startedAt, record.finishedAt) : null],
        ['SHA-256', record.sha256],
      ]);
      out.write(
        output === undefined ? '(output shown to operators and admins only)\n' : `--- output ---\n${output}`,
      );
      if (output && !output.endsWith('\n')) out.write('\n');
      return 0;
    },
  }),
];
