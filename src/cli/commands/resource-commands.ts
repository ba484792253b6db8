import { ApiClient, resolveConnection } from '../../client/api-client.ts';
import type { Alert, ApiToken, Host, Job, Machine, Policy, Site } from '../../domain/model.ts';
import {
  type Command,
  type CommandArgs,
  connectionOptions,
  integer,
  parseDuration,
  positional,
  required,
  str,
} from '../command.ts';
import { watchJob } from '../job-progress.ts';
import { type Output, printJson, printRecord, printTable, stdoutOutput } from '../output.ts';

export function connect(args: CommandArgs): { client: ApiClient; out: Output } {
  const client = new ApiClient(
    resolveConnection({ url: str(args, 'url'), token: str(args, 'token'), data: str(args, 'data') }),
  );
  return { client, out: stdoutOutput(args.values.json === true) };
}

/** Prints a list as a table, or as JSON with --json. */
function list<T>(out: Output, items: T[], columns: string[]): number {
  if (out.json) printJson(out, items);
  else printTable(out, items as Record<string, unknown>[], columns);
  return 0;
}

function show(out: Output, item: unknown, keys?: string[]): number {
  if (out.json) printJson(out, item);
  else printRecord(out, item as Record<string, unknown>, keys);
  return 0;
}

export const resourceCommands: Command[] = [
  {
    name: 'machines list',
    summary: 'List machines',
    options: { ...connectionOptions, state: { type: 'string' }, host: { type: 'string' } },
    run: async (args) => {
      const { client, out } = connect(args);
      const q = new URLSearchParams();
      if (str(args, 'state')) q.set('state', str(args, 'state')!);
      if (str(args, 'host')) q.set('hostId', str(args, 'host')!);
      const { machines } = await client.get<{ machines: Machine[] }>(`/machines?${q}`);
      return list(out, machines, ['name', 'state', 'health', 'activeHostId', 'id']);
    },
  },
  {
    name: 'machines show',
    summary: 'Show one machine (id or name)',
    usage: 'MACHINE',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      const machine = await client.get<Machine>(
        `/machines/${encodeURIComponent(positional(args, 0, 'machine'))}`,
      );
      return show(out, machine);
    },
  },
  {
    name: 'machines create',
    summary: 'Register a machine on a host: --host H --disk ID:SIZE:SOURCE (repeatable)',
    usage: 'NAME',
    options: {
      ...connectionOptions,
      host: { type: 'string' },
      disk: { type: 'string', multiple: true },
      cpus: { type: 'string' },
      memory: { type: 'string' },
    },
    run: async (args) => {
      const { client, out } = connect(args);
      const name = positional(args, 0, 'name');
      const disks = ((args.values.disk as string[] | undefined) ?? []).map((spec) => {
        const [id, size, ...source] = spec.split(':');
        return { id, sizeBytes: Number(size), source: source.join(':') };
      });
      const machine = await client.post<Machine>('/machines', {
        name,
        hostId: required(args, 'host'),
        disks,
        recoverySettings: {
          targetName: name,
          cpus: integer(str(args, 'cpus'), 'cpus') ?? 1,
          memoryMiB: integer(str(args, 'memory'), 'memory') ?? 512,
        },
      });
      return show(out, machine, ['id', 'name', 'state', 'activeHostId']);
    },
  },
  {
    name: 'machines points',
    summary: 'List recovery points of a machine',
    usage: 'MACHINE',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      const { recoveryPoints } = await client.get<{ recoveryPoints: unknown[] }>(
        `/machines/${encodeURIComponent(positional(args, 0, 'machine'))}/recovery-points`,
      );
      return list(out, recoveryPoints, ['time', 'type', 'processed', 'sizeBytes', 'id']);
    },
  },
  {
    name: 'policies list',
    summary: 'List replication policies',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      const { policies } = await client.get<{ policies: Policy[] }>('/policies');
      return list(out, policies, [
        'name',
        'rpoThresholdSeconds',
        'retentionSeconds',
        'appConsistentFrequencySeconds',
        'builtIn',
        'id',
      ]);
    },
  },
  {
    name: 'policies show',
    summary: 'Show a policy',
    usage: 'POLICY',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      return show(
        out,
        await client.get<Policy>(`/policies/${encodeURIComponent(positional(args, 0, 'policy'))}`),
      );
    },
  },
  {
    name: 'policies create',
    summary: 'Create a policy: --rpo 15m --retention 24h --app-consistent 1h',
    usage: 'NAME',
    options: {
      ...connectionOptions,
      rpo: { type: 'string' },
      retention: { type: 'string' },
      'app-consistent': { type: 'string' },
    },
    run: async (args) => {
      const { client, out } = connect(args);
      const policy = await client.post<Policy>('/policies', {
        name: positional(args, 0, 'name'),
        rpoThresholdSeconds: parseDuration(required(args, 'rpo'), 'rpo'),
        retentionSeconds: parseDuration(required(args, 'retention'), 'retention'),
        appConsistentFrequencySeconds: parseDuration(str(args, 'app-consistent') ?? '0', 'app-consistent'),
      });
      return show(out, policy);
    },
  },
  {
    name: 'policies update',
    summary: 'Edit a policy: any of --rpo --retention --app-consistent',
    usage: 'POLICY',
    options: {
      ...connectionOptions,
      rpo: { type: 'string' },
      retention: { type: 'string' },
      'app-consistent': { type: 'string' },
    },
    run: async (args) => {
      const { client, out } = connect(args);
      const patch: Record<string, number> = {};
      if (str(args, 'rpo')) patch.rpoThresholdSeconds = parseDuration(str(args, 'rpo')!, 'rpo');
      if (str(args, 'retention'))
        patch.retentionSeconds = parseDuration(str(args, 'retention')!, 'retention');
      if (str(args, 'app-consistent')) {
        patch.appConsistentFrequencySeconds = parseDuration(str(args, 'app-consistent')!, 'app-consistent');
      }
      return show(
        out,
        await client.patch<Policy>(`/policies/${encodeURIComponent(positional(args, 0, 'policy'))}`, patch),
      );
    },
  },
  {
    name: 'policies delete',
    summary: 'Delete a policy',
    usage: 'POLICY',
    options: connectionOptions,
    run: async (args) => {
      const { client } = connect(args);
      await client.delete(`/policies/${encodeURIComponent(positional(args, 0, 'policy'))}`);
      return 0;
    },
  },
  {
    name: 'jobs list',
    summary: 'List jobs, newest first',
    options: { ...connectionOptions, state: { type: 'string' }, limit: { type: 'string' } },
    run: async (args) => {
      const { client, out } = connect(args);
      const q = new URLSearchParams();
      if (str(args, 'state')) q.set('state', str(args, 'state')!);
      q.set('limit', str(args, 'limit') ?? '50');
      const { jobs } = await client.get<{ jobs: Job[] }>(`/jobs?${q}`);
      return list(out, jobs, ['id', 'kind', 'state', 'progress', 'createdBy', 'createdAt']);
    },
  },
  {
    name: 'jobs show',
    summary: 'Show a job and its steps',
    usage: 'JOB',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      const job = await client.get<Job>(`/jobs/${encodeURIComponent(positional(args, 0, 'job'))}`);
      if (out.json) return show(out, job);
      printRecord(out, job as unknown as Record<string, unknown>, [
        'id',
        'kind',
        'state',
        'progress',
        'targetId',
        'createdBy',
        'createdAt',
        'startedAt',
        'finishedAt',
        'error',
        'output',
      ]);
      out.write('\n');
      printTable(out, job.steps as unknown as Record<string, unknown>[], [
        'index',
        'title',
        'state',
        'progress',
        'message',
      ]);
      return job.state === 'failed' ? 1 : 0;
    },
  },
  {
    name: 'jobs watch',
    summary: 'Follow a job with progress bars until it ends',
    usage: 'JOB',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      const job = await watchJob(client, positional(args, 0, 'job'), {
        tty: process.stdout.isTTY === true && !out.json,
        write: (t) => (out.json ? undefined : out.write(t)),
      });
      if (out.json) printJson(out, job);
      return job.state === 'succeeded' ? 0 : 1;
    },
  },
  {
    name: 'jobs cancel',
    summary: 'Cancel a job (refused past its point of no return)',
    usage: 'JOB',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      const job = await client.post<Job>(`/jobs/${encodeURIComponent(positional(args, 0, 'job'))}/cancel`);
      return show(out, job, ['id', 'kind', 'state', 'cancelRequested']);
    },
  },
  {
    name: 'sites list',
    summary: 'List sites',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      const { sites } = await client.get<{ sites: Site[] }>('/sites');
      return list(out, sites, ['name', 'role', 'testNetwork', 'id']);
    },
  },
  {
    name: 'sites create',
    summary: 'Create a site: --role primary|recovery',
    usage: 'NAME',
    options: { ...connectionOptions, role: { type: 'string' }, 'test-network': { type: 'string' } },
    run: async (args) => {
      const { client, out } = connect(args);
      const site = await client.post<Site>('/sites', {
        name: positional(args, 0, 'name'),
        role: required(args, 'role'),
        testNetwork: str(args, 'test-network') ?? null,
      });
      return show(out, site);
    },
  },
  {
    name: 'hosts list',
    summary: 'List hosts and their heartbeats',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      const { hosts } = await client.get<{ hosts: Host[] }>('/hosts');
      return list(out, hosts, ['name', 'status', 'lastHeartbeatAt', 'capabilities', 'id']);
    },
  },
  {
    name: 'hosts show',
    summary: 'Show a host',
    usage: 'HOST',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      return show(out, await client.get<Host>(`/hosts/${encodeURIComponent(positional(args, 0, 'host'))}`));
    },
  },
  {
    name: 'hosts enrolment-token',
    summary: 'Create a one-time enrolment token for a new host: --site S [--name N]',
    options: {
      ...connectionOptions,
      site: { type: 'string' },
      name: { type: 'string' },
      ttl: { type: 'string' },
    },
    run: async (args) => {
      const { client, out } = connect(args);
      const token = await client.post<{ token: string; expiresAt: string }>('/enrolment-tokens', {
        siteId: required(args, 'site'),
        ...(str(args, 'name') ? { hostName: str(args, 'name') } : {}),
        ...(str(args, 'ttl') ? { ttlSeconds: parseDuration(str(args, 'ttl')!, 'ttl') } : {}),
      });
      if (out.json) return show(out, token);
      out.write(`${token.token}\n`);
      return 0;
    },
  },
  {
    name: 'tokens list',
    summary: 'List API tokens',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      const { tokens } = await client.get<{ tokens: ApiToken[] }>('/tokens');
      return list(out, tokens, ['name', 'role', 'lastUsedAt', 'id']);
    },
  },
  {
    name: 'tokens create',
    summary: 'Create an API token: --role admin|operator|viewer (the secret is printed once)',
    usage: 'NAME',
    options: { ...connectionOptions, role: { type: 'string' } },
    run: async (args) => {
      const { client, out } = connect(args);
      const token = await client.post<{ token: string }>('/tokens', {
        name: positional(args, 0, 'name'),
        role: required(args, 'role'),
      });
      if (out.json) return show(out, token);
      out.write(`${token.token}\n`);
      return 0;
    },
  },
  {
    name: 'tokens revoke',
    summary: 'Revoke an API token',
    usage: 'TOKEN-ID',
    options: connectionOptions,
    run: async (args) => {
      const { client } = connect(args);
      await client.delete(`/tokens/${encodeURIComponent(positional(args, 0, 'token id'))}`);
      return 0;
    },
  },
  {
    name: 'alerts list',
    summary: 'List alerts (--open for open ones)',
    options: { ...connectionOptions, open: { type: 'boolean' } },
    run: async (args) => {
      const { client, out } = connect(args);
      const { alerts } = await client.get<{ alerts: Alert[] }>(
        `/alerts${args.values.open ? '?open=true' : ''}`,
      );
      return list(out, alerts, ['severity', 'message', 'raisedAt', 'clearedAt']);
    },
  },
];
