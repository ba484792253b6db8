import type { ApiClient } from '../../client/api-client.ts';
import type { Job } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import { parseDuration } from '../../text/human-units.ts';
import {
  type Command,
  type CommandArgs,
  connect,
  connectionOptions,
  type OptionSpec,
  positionalRef,
  required,
  resolveOptionRefs,
  str,
} from '../command.ts';
import { watchJob } from '../job-progress.ts';
import { printJson } from '../output.ts';
import { type Collection, resolvePoint } from '../resolve-ref.ts';

const POINT_OPTIONS = [
  'latest',
  'latest-processed',
  'latest-app-consistent',
  'latest-multi-machine-processed',
  'latest-multi-machine-app-consistent',
];

const pointOptions: OptionSpec = {
  point: {
    type: 'string',
    value: 'POINT',
    description: `${POINT_OPTIONS.join(', ')}, or a point as haven machines points prints it (or the start of one; default latest-processed)`,
  },
};

/** --point latest|latest-processed|…|<point id> */
export function recoveryPoint(args: CommandArgs): { option: string; pointId?: string } {
  const point = str(args, 'point') ?? 'latest-processed';
  return POINT_OPTIONS.includes(point) ? { option: point } : { option: 'custom', pointId: point };
}

/**
 * The args with --point, when it names one point (not latest…), as the full
 * id of that point among the points of `machines` (one machine's, or a plan's).
 */
export async function resolvePointOption(
  client: ApiClient,
  machines: readonly string[],
  args: CommandArgs,
): Promise<CommandArgs> {
  const point = str(args, 'point');
  if (point === undefined || POINT_OPTIONS.includes(point)) return args;
  return { ...args, values: { ...args.values, point: await resolvePoint(client, machines, point) } };
}

/** --force-off-after 60s, as the API's planned-failover `forceOffAfterSeconds`. */
export function plannedFailoverBody(args: CommandArgs): { forceOffAfterSeconds?: number } {
  const after = str(args, 'force-off-after');
  return after ? { forceOffAfterSeconds: parseDuration(after, 'force-off-after') } : {};
}

/** --sync before|full, as the API's failback `dataSync`. */
export function dataSync(args: CommandArgs): string {
  const sync = required(args, 'sync');
  const dataSync = { before: 'before-failover', full: 'full-download' }[sync];
  if (!dataSync)
    throw new HavenError('bad_request', `--sync must be 'before' or 'full', not '${sync}'`, {
      field: 'sync',
    });
  return dataSync;
}

interface LifecycleCommand {
  name: string;
  operation: string;
  summary: string;
  /** Arguments after `haven NAME` in the help's example. */
  example: string;
  /** Options that name other objects (by name, id or short id). */
  refs?: Record<string, Collection>;
  options?: OptionSpec;
  body(args: CommandArgs): Record<string, unknown>;
}

const LIFECYCLE: LifecycleCommand[] = [
  {
    name: 'enable-replication',
    operation: 'enable-replication',
    summary: 'Protect a machine: replicate it to a recovery host',
    example: 'web-01 --recovery-host recovery --policy gold',
    refs: { 'recovery-host': 'hosts', policy: 'policies' },
    options: {
      'recovery-host': {
        type: 'string',
        value: 'HOST',
        description: 'the host replicas live on and the machine fails over to',
      },
      policy: { type: 'string', value: 'POLICY', description: 'the replication policy (RPO, retention)' },
    },
    body: (a) => ({ recoveryHostId: required(a, 'recovery-host'), policyId: required(a, 'policy') }),
  },
  {
    name: 'disable-replication',
    operation: 'disable-replication',
    summary: 'Stop protecting a machine',
    example: 'web-01',
    body: () => ({}),
  },
  {
    name: 'test-failover',
    operation: 'test-failover',
    summary: 'DR drill: start a copy of the machine in the test network',
    example: 'web-01 --point latest-app-consistent',
    options: {
      ...pointOptions,
      network: {
        type: 'string',
        value: 'NETWORK',
        description: "the drill's network (default the site's test network)",
      },
    },
    body: (a) => ({
      recoveryPoint: recoveryPoint(a),
      ...(str(a, 'network') ? { network: str(a, 'network') } : {}),
    }),
  },
  {
    name: 'cleanup-test-failover',
    operation: 'cleanup-test-failover',
    summary: 'End a drill: remove the drill machine',
    example: "web-01 --notes 'app answered in 4 min'",
    options: {
      notes: { type: 'string', value: 'TEXT', description: "the drill's findings, kept with the job" },
    },
    body: (a) => ({ notes: str(a, 'notes') ?? '' }),
  },
  {
    name: 'failover',
    operation: 'failover',
    summary: 'Unplanned failover: start the machine at the recovery site from a recovery point',
    example: 'web-01 --point latest',
    options: {
      ...pointOptions,
      'no-shutdown': { type: 'boolean', description: 'do not try to shut down the source machine first' },
    },
    body: (a) => ({ recoveryPoint: recoveryPoint(a), shutdownSource: a.values['no-shutdown'] !== true }),
  },
  {
    name: 'planned-failover',
    operation: 'planned-failover',
    summary: 'Planned failover: shut down, send everything, start at recovery',
    example: 'web-01 --force-off-after 60s',
    options: {
      'force-off-after': {
        type: 'string',
        value: 'DURATION',
        description: 'power off a guest that ignores ACPI shutdown after this long',
      },
    },
    body: (a) => plannedFailoverBody(a),
  },
  {
    name: 'change-point',
    operation: 'change-recovery-point',
    summary: 'Restart a failed-over machine from another point',
    example: 'web-01 --point disk0@42',
    options: pointOptions,
    body: (a) => ({ recoveryPoint: recoveryPoint(a) }),
  },
  { name: 'commit', operation: 'commit', summary: 'Commit a failover', example: 'web-01', body: () => ({}) },
  {
    name: 'reprotect',
    operation: 'reprotect',
    summary: 'Reverse replication: protect the failed-over machine back to its original site',
    example: 'web-01',
    refs: { 'alternate-host': 'hosts' },
    options: {
      'alternate-host': {
        type: 'string',
        value: 'HOST',
        description: 'replicate to this host instead of the original one',
      },
      full: { type: 'boolean', description: 'copy every block, not only the differences' },
    },
    body: (a) => ({
      fullResync: a.values.full === true,
      ...(str(a, 'alternate-host') ? { alternateHostId: str(a, 'alternate-host') } : {}),
    }),
  },
  {
    name: 'failback',
    operation: 'failback',
    summary: 'Fail back to the original site',
    example: 'web-01 --sync before',
    refs: { 'alternate-host': 'hosts' },
    options: {
      sync: {
        type: 'string',
        value: 'before|full',
        description:
          'before: synchronise, then switch (finish with complete-failover); full: download everything',
      },
      'alternate-host': {
        type: 'string',
        value: 'HOST',
        description: 'fail back to this host instead of the original one',
      },
    },
    body: (a) => ({
      dataSync: dataSync(a),
      ...(str(a, 'alternate-host') ? { alternateHostId: str(a, 'alternate-host') } : {}),
    }),
  },
  {
    name: 'complete-failover',
    operation: 'complete-failover',
    summary: 'Finish a synchronised failback',
    example: 'web-01',
    body: () => ({}),
  },
  {
    name: 'resync',
    operation: 'resync',
    summary: 'Resynchronise replication',
    example: 'web-01',
    options: { full: { type: 'boolean', description: 'copy every block, not only the differences' } },
    body: (a) => ({ full: a.values.full === true }),
  },
];

export const lifecycleCommands: Command[] = LIFECYCLE.map((c) => ({
  name: c.name,
  summary: `${c.summary}; waits for its job, with progress`,
  usage: 'MACHINE',
  options: {
    ...c.options,
    'no-wait': { type: 'boolean', description: 'print the queued job and return at once' },
    ...connectionOptions,
  },
  examples: [`haven ${c.name} ${c.example}`],
  run: async (args) => {
    const { client, out } = connect(args);
    const machine = await positionalRef(client, args, 0, 'machine', 'machines');
    const resolved = await resolvePointOption(
      client,
      [machine],
      await resolveOptionRefs(client, args, c.refs ?? {}),
    );
    const job = await client.post<Job>(
      `/machines/${encodeURIComponent(machine)}/${c.operation}`,
      c.body(resolved),
    );
    if (args.values['no-wait'] === true) {
      if (out.json) printJson(out, job);
      else out.write(`${job.kind} job ${job.id} queued\n`);
      return 0;
    }
    const done = await watchJob(client, job.id, {
      tty: process.stdout.isTTY === true && !out.json,
      columns: process.stdout.columns,
      write: (t) => (out.json ? undefined : out.write(t)),
    });
    if (out.json) printJson(out, done);
    return done.state === 'succeeded' ? 0 : 1;
  },
}));
