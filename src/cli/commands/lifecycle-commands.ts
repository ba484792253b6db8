import type { Job } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import {
  type Command,
  type CommandArgs,
  connect,
  connectionOptions,
  type OptionSpec,
  parseDuration,
  positional,
  required,
  str,
} from '../command.ts';
import { watchJob } from '../job-progress.ts';
import { printJson } from '../output.ts';

const POINT_OPTIONS = [
  'latest',
  'latest-processed',
  'latest-app-consistent',
  'latest-multi-machine-processed',
  'latest-multi-machine-app-consistent',
];

const pointOptions: OptionSpec = { point: { type: 'string' } };

/** --point latest|latest-processed|…|<point id> */
export function recoveryPoint(args: CommandArgs): { option: string; pointId?: string } {
  const point = str(args, 'point') ?? 'latest-processed';
  return POINT_OPTIONS.includes(point) ? { option: point } : { option: 'custom', pointId: point };
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
  options?: OptionSpec;
  body(args: CommandArgs): Record<string, unknown>;
}

const LIFECYCLE: LifecycleCommand[] = [
  {
    name: 'enable-replication',
    operation: 'enable-replication',
    summary: 'Protect a machine: --recovery-host H --policy P',
    options: { 'recovery-host': { type: 'string' }, policy: { type: 'string' } },
    body: (a) => ({ recoveryHostId: required(a, 'recovery-host'), policyId: required(a, 'policy') }),
  },
  {
    name: 'disable-replication',
    operation: 'disable-replication',
    summary: 'Stop protecting a machine',
    body: () => ({}),
  },
  {
    name: 'test-failover',
    operation: 'test-failover',
    summary: 'DR drill into the test network: [--point P] [--network N]',
    options: { ...pointOptions, network: { type: 'string' } },
    body: (a) => ({
      recoveryPoint: recoveryPoint(a),
      ...(str(a, 'network') ? { network: str(a, 'network') } : {}),
    }),
  },
  {
    name: 'cleanup-test-failover',
    operation: 'cleanup-test-failover',
    summary: 'Remove the drill machine: [--notes TEXT]',
    options: { notes: { type: 'string' } },
    body: (a) => ({ notes: str(a, 'notes') ?? '' }),
  },
  {
    name: 'failover',
    operation: 'failover',
    summary:
      'Unplanned failover: [--point latest|latest-processed|latest-app-consistent|…|POINT-ID] [--no-shutdown]',
    options: { ...pointOptions, 'no-shutdown': { type: 'boolean' } },
    body: (a) => ({ recoveryPoint: recoveryPoint(a), shutdownSource: a.values['no-shutdown'] !== true }),
  },
  {
    name: 'planned-failover',
    operation: 'planned-failover',
    summary:
      'Planned failover: shut down, send everything, start at recovery: [--force-off-after 60s] (power off a guest that ignores ACPI after that long)',
    options: { 'force-off-after': { type: 'string' } },
    body: (a) => plannedFailoverBody(a),
  },
  {
    name: 'change-point',
    operation: 'change-recovery-point',
    summary: 'Restart a failed-over machine from another point: --point P',
    options: pointOptions,
    body: (a) => ({ recoveryPoint: recoveryPoint(a) }),
  },
  { name: 'commit', operation: 'commit', summary: 'Commit a failover', body: () => ({}) },
  {
    name: 'reprotect',
    operation: 'reprotect',
    summary: 'Reverse replication: [--alternate-host H] [--full]',
    options: { 'alternate-host': { type: 'string' }, full: { type: 'boolean' } },
    body: (a) => ({
      fullResync: a.values.full === true,
      ...(str(a, 'alternate-host') ? { alternateHostId: str(a, 'alternate-host') } : {}),
    }),
  },
  {
    name: 'failback',
    operation: 'failback',
    summary: 'Fail back: --sync before|full [--alternate-host H]',
    options: { sync: { type: 'string' }, 'alternate-host': { type: 'string' } },
    body: (a) => ({
      dataSync: dataSync(a),
      ...(str(a, 'alternate-host') ? { alternateHostId: str(a, 'alternate-host') } : {}),
    }),
  },
  {
    name: 'complete-failover',
    operation: 'complete-failover',
    summary: 'Finish a synchronised failback',
    body: () => ({}),
  },
  {
    name: 'resync',
    operation: 'resync',
    summary: 'Resynchronise replication: [--full]',
    options: { full: { type: 'boolean' } },
    body: (a) => ({ full: a.values.full === true }),
  },
];

export const lifecycleCommands: Command[] = LIFECYCLE.map((c) => ({
  name: c.name,
  summary: `${c.summary} (waits with progress; --no-wait to return at once)`,
  usage: 'MACHINE',
  options: { ...connectionOptions, ...c.options, 'no-wait': { type: 'boolean' } },
  run: async (args) => {
    const { client, out } = connect(args);
    const machine = encodeURIComponent(positional(args, 0, 'machine'));
    const job = await client.post<Job>(`/machines/${machine}/${c.operation}`, c.body(args));
    if (args.values['no-wait'] === true) {
      if (out.json) printJson(out, job);
      else out.write(`${job.kind} job ${job.id} queued\n`);
      return 0;
    }
    const done = await watchJob(client, job.id, {
      tty: process.stdout.isTTY === true && !out.json,
      write: (t) => (out.json ? undefined : out.write(t)),
    });
    if (out.json) printJson(out, done);
    return done.state === 'succeeded' ? 0 : 1;
  },
}));
