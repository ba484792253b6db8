import { readFile, writeFile } from 'node:fs/promises';
import { stringify as toYaml } from 'yaml';
import { isTerminalJobState } from '../../domain/job-states.ts';
import type { Job, RecoveryPlan } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import { formatDuration } from '../../text/human-units.ts';
import { PLAN_OPERATIONS } from '../../vault/plans/plan-steps.ts';
import {
  type Command,
  type CommandArgs,
  connect,
  positional,
  positionalRef,
  str,
  vaultCommand,
} from '../command.ts';
import { type Column, type Output, printJson, printRecord } from '../output.ts';
import { shortId } from '../resolve-ref.ts';
import { crudCommands } from './crud-commands.ts';
import { dataSync, plannedFailoverBody, recoveryPoint, resolvePointOption } from './lifecycle-commands.ts';

const OPERATIONS: readonly string[] = PLAN_OPERATIONS;

/** The operation's body from the flags, as `haven <operation> MACHINE` takes them. */
function operationBody(operation: string, args: CommandArgs): Record<string, unknown> {
  switch (operation) {
    case 'test-failover':
      return {
        recoveryPoint: recoveryPoint(args),
        ...(str(args, 'network') ? { network: str(args, 'network') } : {}),
      };
    case 'cleanup-test-failover':
      return { notes: str(args, 'notes') ?? '' };
    case 'failover':
      return { recoveryPoint: recoveryPoint(args), shutdownSource: args.values['no-shutdown'] !== true };
    case 'planned-failover':
      return plannedFailoverBody(args);
    case 'reprotect':
      return { fullResync: args.values.full === true };
    case 'failback':
      return { dataSync: dataSync(args) };
    default:
      return {};
  }
}

async function documentFile(args: CommandArgs): Promise<{ format: 'json' | 'yaml'; content: string }> {
  const file = str(args, 'file') ?? args.positionals[0];
  if (!file)
    throw new HavenError('bad_request', '--file is required (a .json, .yaml or .yml plan)', {
      field: 'file',
    });
  const format = /\.ya?ml$/i.test(file) ? 'yaml' : 'json';
  return { format, content: await readFile(file, 'utf8') };
}

type PresentedPlan = Omit<RecoveryPlan, 'groups'> & {
  groups: (RecoveryPlan['groups'][number] & { machineNames: string[] })[];
  rtoEstimateSeconds: number | null;
  activeJobId: string | null;
};

const plans = crudCommands({
  plural: 'plans',
  singular: 'plan',
  example: 'web-tier',
  list: {
    summary: 'List recovery plans',
    columns: (): Column<RecoveryPlan>[] => [
      { header: 'Plan', value: (p) => p.name },
      { header: 'Groups', value: (p) => p.groups.length },
      { header: 'Machines', value: (p) => p.groups.reduce((n, g) => n + g.machineIds.length, 0) },
      { header: 'Id', value: (p) => p.id, wide: true },
    ],
  },
  show: {
    summary: 'Show a recovery plan, its groups in order and its RTO estimate',
    print: (out: Output, plan: PresentedPlan) => {
      if (out.json) {
        printJson(out, plan);
        return 0;
      }
      printRecord(out, [
        ['Plan', plan.name],
        ['Description', plan.description],
        [
          'RTO estimate',
          plan.rtoEstimateSeconds === null ? 'no history yet' : formatDuration(plan.rtoEstimateSeconds),
        ],
        ['Active job', plan.activeJobId ? shortId(plan.activeJobId) : null],
        ['Id', plan.id],
      ]);
      plan.groups.forEach((group, g) => {
        out.write(`group ${g + 1} '${group.name}': ${group.machineNames.join(', ') || '(no machines)'}\n`);
        for (const side of ['before', 'after'] as const)
          for (const action of group[side]) out.write(`  ${side}: ${action.kind} '${action.name}'\n`);
      });
      return 0;
    },
  },
  create: {
    summary: 'Create a recovery plan from a JSON or YAML file',
    examples: ['haven plans create --file web-tier.yaml'],
    options: { file: { type: 'string', value: 'FILE', description: 'the plan, as .json, .yaml or .yml' } },
    path: '/plans/import',
    body: async (args) => ({ ...(await documentFile(args)), replace: false }),
    print: (out: Output, plan: RecoveryPlan) => {
      if (out.json) printJson(out, plan);
      else out.write(`plan '${plan.name}' created (${plan.id})\n`);
      return 0;
    },
  },
  delete: { summary: 'Delete a recovery plan (its machines are not touched)', done: 'deleted' },
});

export const planCommands: Command[] = [
  plans.list,
  plans.show,
  plans.create,
  vaultCommand({
    name: 'plans import',
    summary: 'Import a plan exported as JSON or YAML',
    examples: ['haven plans import --file web-tier.yaml --replace'],
    options: {
      file: { type: 'string', value: 'FILE', description: 'the plan, as .json, .yaml or .yml' },
      replace: { type: 'boolean', description: 'replace a plan of the same name' },
    },
    run: async (args, { client, out }) => {
      const plan = await client.post<RecoveryPlan>('/plans/import', {
        ...(await documentFile(args)),
        replace: args.values.replace === true,
      });
      if (out.json) printJson(out, plan);
      else out.write(`plan '${plan.name}' imported (${plan.id})\n`);
      return 0;
    },
  }),
  vaultCommand({
    name: 'plans export',
    summary: 'Export a plan (machines by name)',
    usage: 'PLAN',
    examples: ['haven plans export web-tier --output web-tier.yaml'],
    options: {
      format: {
        type: 'string',
        value: 'json|yaml',
        description: "the document's format (default from --output's extension, else json)",
      },
      output: { type: 'string', value: 'FILE', description: 'write to FILE instead of standard output' },
    },
    run: async (args, { client, out }) => {
      const format = str(args, 'format') ?? (/\.ya?ml$/i.test(str(args, 'output') ?? '') ? 'yaml' : 'json');
      if (format !== 'json' && format !== 'yaml')
        throw new HavenError('bad_request', `--format must be json or yaml, not '${format}'`, {
          field: 'format',
        });
      const plan = await positionalRef(client, args, 0, 'plan', 'plans');
      const doc = await client.get(`/plans/${encodeURIComponent(plan)}/export`);
      const text = format === 'yaml' ? toYaml(doc) : `${JSON.stringify(doc, null, 2)}\n`;
      const file = str(args, 'output');
      if (file) await writeFile(file, text);
      else out.write(text);
      return 0;
    },
  }),
  plans.delete,
  vaultCommand({
    name: 'plans run',
    summary: `Run an operation over a plan (${OPERATIONS.join(', ')}); follows the job and stops at a manual action`,
    usage: 'PLAN OPERATION',
    examples: [
      'haven plans run web-tier test-failover --point latest-app-consistent',
      'haven plans run web-tier failover',
    ],
    options: {
      point: {
        type: 'string',
        value: 'POINT',
        description:
          'failover, test-failover: latest, latest-processed (default), latest-app-consistent, latest-multi-machine-…, or a point of a machine of the plan as haven machines points prints it (or the start of one)',
      },
      network: { type: 'string', value: 'NETWORK', description: "test-failover: the drill's network" },
      notes: { type: 'string', value: 'TEXT', description: "cleanup-test-failover: the drill's findings" },
      'no-shutdown': {
        type: 'boolean',
        description: 'failover: do not try to shut the source machines down',
      },
      'force-off-after': {
        type: 'string',
        value: 'DURATION',
        description: 'planned-failover: power off guests that ignore ACPI after this long',
      },
      full: { type: 'boolean', description: 'reprotect: copy every block' },
      sync: {
        type: 'string',
        value: 'before|full',
        description: 'failback: synchronise before, or download everything',
      },
      'no-wait': { type: 'boolean', description: 'print the queued job and return at once' },
    },
    run: async (args, { client, out }) => {
      const plan = encodeURIComponent(await positionalRef(client, args, 0, 'plan', 'plans'));
      const operation = positional(args, 1, 'operation');
      if (!OPERATIONS.includes(operation))
        throw new HavenError(
          'bad_request',
          `operation must be one of ${OPERATIONS.join(', ')}, not '${operation}'`,
          {
            field: 'operation',
          },
        );
      // A point named as `machines points` prints it is one of the plan's machines' points.
      const machines = (await client.get<RecoveryPlan>(`/plans/${plan}`)).groups.flatMap((g) => g.machineIds);
      const resolved = await resolvePointOption(client, machines, args);
      const job = await client.post<Job>(`/plans/${plan}/${operation}`, operationBody(operation, resolved));
      if (args.values['no-wait'] === true) {
        if (out.json) printJson(out, job);
        else out.write(`plan job ${job.id} queued\n`);
        return 0;
      }
      return follow(client, job.id, args);
    },
  }),
  vaultCommand({
    name: 'plans resume',
    summary: 'Resume a plan job waiting at a manual action, then follow it',
    usage: 'JOB',
    examples: ['haven plans resume 3f9c2a1b'],
    options: {
      'no-wait': { type: 'boolean', description: 'return once resumed, without following the job' },
    },
    run: async (args, { client, out }) => {
      const id = await positionalRef(client, args, 0, 'job', 'jobs');
      const job = await client.post<Job>(`/jobs/${encodeURIComponent(id)}/resume`);
      if (args.values['no-wait'] === true) {
        if (out.json) printJson(out, job);
        else out.write(`job ${job.id} resumed\n`);
        return 0;
      }
      return follow(client, job.id, args);
    },
  }),
];

/**
 * Prints each step as it changes until the job ends or waits for an operator;
 * exit code 0 when it succeeded or waits, 1 when it failed or was cancelled.
 */
async function follow(client: ReturnType<typeof connect>['client'], jobId: string, args: CommandArgs) {
  const out = connect(args).out;
  const seen = new Map<number, string>();
  for (;;) {
    const job = await client.get<Job>(`/jobs/${jobId}`);
    for (const step of job.steps) {
      const line = `${step.title}: ${step.state}`;
      if (seen.get(step.index) !== line && step.state !== 'pending') {
        seen.set(step.index, line);
        if (!out.json) out.write(`${line}\n`);
      }
    }
    if (job.state === 'waiting') {
      const step = job.steps.find((s) => s.state === 'running');
      if (out.json) printJson(out, job);
      else out.write(`waiting: ${step?.message ?? ''}\nresume with: haven plans resume ${job.id}\n`);
      return 0;
    }
    if (isTerminalJobState(job.state)) {
      if (out.json) printJson(out, job);
      else out.write(`plan job ${job.id} ${job.state}${job.error ? `: ${job.error.message}` : ''}\n`);
      return job.state === 'succeeded' ? 0 : 1;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
