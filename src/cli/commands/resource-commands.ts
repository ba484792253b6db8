import type { Job, Machine } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { HypervisorInventory } from '../../hypervisor/hypervisor.ts';
import {
  type Command,
  type CommandArgs,
  parseDuration,
  positional,
  required,
  str,
  vaultCommand,
} from '../command.ts';
import { watchJob } from '../job-progress.ts';
import { type Output, printJson, printRecord, printTable } from '../output.ts';
import { crudCommands, list, show } from './crud-commands.ts';
import { createMachineBody, createMachineOptions, machinePowerCommands } from './machine-commands.ts';

/** Prints a secret the vault shows once: bare, so scripts can capture it, or the whole answer with --json. */
function printSecret(out: Output, answer: { token: string }): number {
  if (out.json) return show(out, answer);
  out.write(`${answer.token}\n`);
  return 0;
}

/** '?', then the API's parameter for each option given, then `always`. */
function query(
  args: CommandArgs,
  parameters: Record<string, string>,
  always: Record<string, string> = {},
): string {
  const q = new URLSearchParams();
  for (const [option, parameter] of Object.entries(parameters)) {
    if (str(args, option)) q.set(parameter, str(args, option)!);
  }
  for (const [parameter, value] of Object.entries(always)) q.set(parameter, value);
  return `?${q}`;
}

const POLICY_OPTIONS = {
  rpo: { type: 'string' },
  retention: { type: 'string' },
  'app-consistent': { type: 'string' },
} as const;

const machines = crudCommands({
  plural: 'machines',
  singular: 'machine',
  list: {
    summary: 'List machines',
    options: { state: { type: 'string' }, host: { type: 'string' } },
    query: (args) => query(args, { state: 'state', host: 'hostId' }),
    columns: ['name', 'state', 'health', 'activeHostId', 'id'],
  },
  show: { summary: 'Show one machine (id or name)' },
  create: {
    summary:
      'Register a machine on a host: --host H --disk ID=SIZE|ID=PATH:SIZE (repeatable) [--nic NET[,mac=..][,ip=A/P]] [--kernel K --initrd I --cmdline C | --boot-disk ID] [--cpus N --memory MiB]',
    usage: 'NAME',
    options: createMachineOptions,
    body: createMachineBody,
    print: (out, machine: Machine) => show(out, machine, ['id', 'name', 'state', 'activeHostId']),
  },
});

const policies = crudCommands({
  plural: 'policies',
  singular: 'policy',
  list: {
    summary: 'List replication policies',
    columns: [
      'name',
      'rpoThresholdSeconds',
      'retentionSeconds',
      'appConsistentFrequencySeconds',
      'builtIn',
      'id',
    ],
  },
  show: { summary: 'Show a policy' },
  create: {
    summary: 'Create a policy: --rpo 15m --retention 24h --app-consistent 1h',
    usage: 'NAME',
    options: POLICY_OPTIONS,
    body: (args) => ({
      name: positional(args, 0, 'name'),
      rpoThresholdSeconds: parseDuration(required(args, 'rpo'), 'rpo'),
      retentionSeconds: parseDuration(required(args, 'retention'), 'retention'),
      appConsistentFrequencySeconds: parseDuration(str(args, 'app-consistent') ?? '0', 'app-consistent'),
    }),
  },
  update: {
    summary: 'Edit a policy: any of --rpo --retention --app-consistent',
    options: POLICY_OPTIONS,
    body: (args) => {
      const patch: Record<string, number> = {};
      if (str(args, 'rpo')) patch.rpoThresholdSeconds = parseDuration(str(args, 'rpo')!, 'rpo');
      if (str(args, 'retention'))
        patch.retentionSeconds = parseDuration(str(args, 'retention')!, 'retention');
      if (str(args, 'app-consistent')) {
        patch.appConsistentFrequencySeconds = parseDuration(str(args, 'app-consistent')!, 'app-consistent');
      }
      return patch;
    },
  },
  delete: { summary: 'Delete a policy' },
});

const jobs = crudCommands({
  plural: 'jobs',
  singular: 'job',
  list: {
    summary: 'List jobs, newest first',
    options: { state: { type: 'string' }, limit: { type: 'string' } },
    query: (args) => query(args, { state: 'state' }, { limit: str(args, 'limit') ?? '50' }),
    columns: ['id', 'kind', 'state', 'progress', 'createdBy', 'createdAt'],
  },
  show: {
    summary: 'Show a job and its steps',
    print: (out, job: Job) => {
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
});

const sites = crudCommands({
  plural: 'sites',
  singular: 'site',
  list: { summary: 'List sites', columns: ['name', 'role', 'testNetwork', 'id'] },
  create: {
    summary: 'Create a site: --role primary|recovery',
    usage: 'NAME',
    options: { role: { type: 'string' }, 'test-network': { type: 'string' } },
    body: (args) => ({
      name: positional(args, 0, 'name'),
      role: required(args, 'role'),
      testNetwork: str(args, 'test-network') ?? null,
    }),
  },
  update: {
    summary:
      "Edit a site: --network-mapping SRC=DST (repeat it; sets the site's whole mapping: its network SRC becomes DST at the recovery site) and/or --test-network N",
    options: { 'network-mapping': { type: 'string', multiple: true }, 'test-network': { type: 'string' } },
    body: (args) => {
      const patch: Record<string, unknown> = {};
      const pairs = args.values['network-mapping'];
      if (Array.isArray(pairs)) {
        patch.networkMapping = Object.fromEntries(
          pairs.map((pair) => {
            const [from, to, ...rest] = String(pair).split('=');
            if (!from || !to || rest.length > 0) {
              throw new HavenError(
                'bad_request',
                `network-mapping: '${pair}' is not SRC=DST (e.g. br0=br-dr)`,
                {
                  field: 'network-mapping',
                },
              );
            }
            return [from, to];
          }),
        );
      }
      if (str(args, 'test-network')) patch.testNetwork = str(args, 'test-network');
      return patch;
    },
  },
});

const hosts = crudCommands({
  plural: 'hosts',
  singular: 'host',
  list: {
    summary: 'List hosts and their heartbeats',
    columns: ['name', 'status', 'lastHeartbeatAt', 'capabilities', 'id'],
  },
  show: { summary: 'Show a host' },
});

const tokens = crudCommands({
  plural: 'tokens',
  singular: 'token id',
  list: { summary: 'List API tokens', columns: ['name', 'role', 'lastUsedAt', 'id'] },
  create: {
    summary: 'Create an API token: --role admin|operator|viewer (the secret is printed once)',
    usage: 'NAME',
    options: { role: { type: 'string' } },
    body: (args) => ({ name: positional(args, 0, 'name'), role: required(args, 'role') }),
    print: printSecret,
  },
  delete: { summary: 'Revoke an API token', verb: 'revoke' },
});

const alerts = crudCommands({
  plural: 'alerts',
  singular: 'alert',
  list: {
    summary: 'List alerts (--open for open ones)',
    options: { open: { type: 'boolean' } },
    query: (args) => (args.values.open ? '?open=true' : ''),
    columns: ['severity', 'message', 'raisedAt', 'clearedAt'],
  },
});

export const resourceCommands: Command[] = [
  machines.list,
  machines.show,
  machines.create,
  ...machinePowerCommands,
  vaultCommand({
    name: 'machines import',
    summary:
      'Import a libvirt domain of a host as a machine (unprotected): disks, CPUs, memory, NICs and boot from the domain [--name N]',
    usage: 'HOST DOMAIN',
    options: { name: { type: 'string' }, os: { type: 'string' } },
    run: async (args, { client, out }) => {
      const machine = await client.post<Machine>('/machines/import', {
        hostId: positional(args, 0, 'host'),
        domain: positional(args, 1, 'domain'),
        ...(str(args, 'name') ? { name: str(args, 'name') } : {}),
        ...(str(args, 'os') ? { osFamily: str(args, 'os') } : {}),
      });
      return show(out, machine, ['id', 'name', 'state', 'primaryHostId']);
    },
  }),
  vaultCommand({
    name: 'machines points',
    summary: 'List recovery points of a machine',
    usage: 'MACHINE',
    run: async (args, { client, out }) => {
      const { recoveryPoints } = await client.get<{ recoveryPoints: unknown[] }>(
        `/machines/${encodeURIComponent(positional(args, 0, 'machine'))}/recovery-points`,
      );
      return list(out, recoveryPoints, ['time', 'type', 'processed', 'sizeBytes', 'id']);
    },
  }),
  policies.list,
  policies.show,
  policies.create,
  policies.update,
  policies.delete,
  jobs.list,
  jobs.show,
  vaultCommand({
    name: 'jobs watch',
    summary: 'Follow a job with progress bars until it ends',
    usage: 'JOB',
    run: async (args, { client, out }) => {
      const job = await watchJob(client, positional(args, 0, 'job'), {
        tty: process.stdout.isTTY === true && !out.json,
        write: (t) => (out.json ? undefined : out.write(t)),
      });
      if (out.json) printJson(out, job);
      return job.state === 'succeeded' ? 0 : 1;
    },
  }),
  vaultCommand({
    name: 'jobs cancel',
    summary: 'Cancel a job (refused past its point of no return)',
    usage: 'JOB',
    run: async (args, { client, out }) => {
      const job = await client.post<Job>(`/jobs/${encodeURIComponent(positional(args, 0, 'job'))}/cancel`);
      return show(out, job, ['id', 'kind', 'state', 'cancelRequested']);
    },
  }),
  sites.list,
  sites.create,
  sites.update,
  hosts.list,
  hosts.show,
  vaultCommand({
    name: 'hosts domains',
    summary: 'List the domains of a host’s hypervisor: state, CPUs, memory, disks (format, size), NICs',
    usage: 'HOST',
    run: async (args, { client, out }) => {
      const inventory = await client.get<HypervisorInventory>(
        `/hosts/${encodeURIComponent(positional(args, 0, 'host'))}/domains`,
      );
      if (out.json) return show(out, inventory);
      const rows = inventory.domains.map((domain) => ({
        name: domain.name,
        state: domain.state,
        cpus: domain.cpus,
        memoryMiB: domain.memoryMiB,
        disks: domain.disks
          .map((d) => `${d.target}:${d.format ?? '?'}:${d.virtualSizeBytes ?? '?'}`)
          .join(' '),
        nics: domain.nics.map((n) => `${n.mac ?? '?'}@${n.network ?? n.type}`).join(' '),
      }));
      return list(out, rows, ['name', 'state', 'cpus', 'memoryMiB', 'disks', 'nics']);
    },
  }),
  vaultCommand({
    name: 'hosts enrolment-token',
    summary: 'Create a one-time enrolment token for a new host: --site S [--name N]',
    options: { site: { type: 'string' }, name: { type: 'string' }, ttl: { type: 'string' } },
    run: async (args, { client, out }) => {
      const token = await client.post<{ token: string; expiresAt: string }>('/enrolment-tokens', {
        siteId: required(args, 'site'),
        ...(str(args, 'name') ? { hostName: str(args, 'name') } : {}),
        ...(str(args, 'ttl') ? { ttlSeconds: parseDuration(str(args, 'ttl')!, 'ttl') } : {}),
      });
      return printSecret(out, token);
    },
  }),
  tokens.list,
  tokens.create,
  tokens.delete,
  alerts.list,
];
