import type { Job, Machine } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { HypervisorInventory } from '../../hypervisor/hypervisor.ts';
import {
  type Command,
  type CommandArgs,
  type OptionSpec,
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

const POLICY_OPTIONS: OptionSpec = {
  rpo: {
    type: 'string',
    value: 'DURATION',
    description: 'RPO threshold: an alert is raised when the newest point is older (e.g. 15m)',
  },
  retention: {
    type: 'string',
    value: 'DURATION',
    description: 'how long recovery points are kept (e.g. 24h)',
  },
  'app-consistent': {
    type: 'string',
    value: 'DURATION',
    description: 'how often to take an app-consistent point through the guest agent (0: never)',
  },
};

const machines = crudCommands({
  plural: 'machines',
  singular: 'machine',
  example: 'web-01',
  list: {
    summary: 'List machines',
    options: {
      state: { type: 'string', value: 'STATE', description: 'only machines in this state (e.g. protected)' },
      host: {
        type: 'string',
        value: 'HOST',
        description: 'only machines whose active host is this one (name or id)',
      },
    },
    query: (args) => query(args, { state: 'state', host: 'hostId' }),
    columns: ['name', 'state', 'health', 'activeHostId', 'id'],
  },
  show: { summary: 'Show one machine (id or name)' },
  create: {
    summary: 'Register a machine on a host, with its disks, NICs and boot settings',
    usage: 'NAME',
    examples: [
      'haven machines create web-01 --host primary --disk disk0=10G --nic lan,ip=10.0.0.5/24,gw=10.0.0.1',
      'haven machines create db-01 --host primary --disk disk0=/srv/images/db.img:40G --boot-disk disk0 --cpus 2 --memory 4096',
    ],
    options: createMachineOptions,
    body: createMachineBody,
    print: (out, machine: Machine) => show(out, machine, ['id', 'name', 'state', 'activeHostId']),
  },
});

const policies = crudCommands({
  plural: 'policies',
  singular: 'policy',
  example: 'gold',
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
    summary: 'Create a replication policy',
    usage: 'NAME',
    examples: ['haven policies create gold --rpo 15m --retention 24h --app-consistent 1h'],
    options: POLICY_OPTIONS,
    body: (args) => ({
      name: positional(args, 0, 'name'),
      rpoThresholdSeconds: parseDuration(required(args, 'rpo'), 'rpo'),
      retentionSeconds: parseDuration(required(args, 'retention'), 'retention'),
      appConsistentFrequencySeconds: parseDuration(str(args, 'app-consistent') ?? '0', 'app-consistent'),
    }),
  },
  update: {
    summary: 'Edit a policy: only the options given change',
    examples: ['haven policies update gold --retention 48h'],
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
  example: '3f9c2a1b',
  list: {
    summary: 'List jobs, newest first',
    options: {
      state: {
        type: 'string',
        value: 'STATE',
        description: 'only jobs in this state (running, waiting, failed, …)',
      },
      limit: { type: 'string', value: 'N', description: 'at most N jobs (default 50)' },
    },
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
  example: 'dr',
  list: { summary: 'List sites', columns: ['name', 'role', 'testNetwork', 'id'] },
  create: {
    summary: 'Create a site',
    usage: 'NAME',
    examples: ['haven sites create dr --role recovery --test-network drill-net'],
    options: {
      role: { type: 'string', value: 'ROLE', description: 'primary or recovery' },
      'test-network': {
        type: 'string',
        value: 'NETWORK',
        description: 'the isolated network drills start machines in',
      },
    },
    body: (args) => ({
      name: positional(args, 0, 'name'),
      role: required(args, 'role'),
      testNetwork: str(args, 'test-network') ?? null,
    }),
  },
  update: {
    summary: "Edit a site's network mapping and test network",
    examples: ['haven sites update primary --network-mapping br0=br-dr --network-mapping lan=dr-lan'],
    options: {
      'network-mapping': {
        type: 'string',
        multiple: true,
        value: 'SRC=DST',
        description:
          "this site's network SRC becomes DST at the recovery site (the whole mapping is replaced)",
      },
      'test-network': {
        type: 'string',
        value: 'NETWORK',
        description: 'the isolated network drills start machines in',
      },
    },
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
  example: 'recovery',
  list: {
    summary: 'List hosts and their heartbeats',
    columns: ['name', 'status', 'lastHeartbeatAt', 'capabilities', 'id'],
  },
  show: { summary: 'Show a host' },
});

const tokens = crudCommands({
  plural: 'tokens',
  singular: 'token id',
  example: '7d1e0c55',
  list: { summary: 'List API tokens', columns: ['name', 'role', 'lastUsedAt', 'id'] },
  create: {
    summary: 'Create an API token (the secret is printed once)',
    usage: 'NAME',
    examples: ['haven tokens create auditor --role viewer'],
    options: { role: { type: 'string', value: 'ROLE', description: 'admin, operator or viewer' } },
    body: (args) => ({ name: positional(args, 0, 'name'), role: required(args, 'role') }),
    print: printSecret,
  },
  delete: { summary: 'Revoke an API token', verb: 'revoke' },
});

const alerts = crudCommands({
  plural: 'alerts',
  singular: 'alert',
  example: 'c0ffee12',
  list: {
    summary: 'List alerts',
    options: { open: { type: 'boolean', description: 'only alerts not yet cleared' } },
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
      'Import a libvirt domain of a host as a machine (unprotected): disks, CPUs, memory, NICs and boot from the domain',
    usage: 'HOST DOMAIN',
    examples: ['haven machines import primary web01 --name web-01 --os linux'],
    options: {
      name: {
        type: 'string',
        value: 'NAME',
        description: "the machine's name in Haven (default: the domain's)",
      },
      os: {
        type: 'string',
        value: 'FAMILY',
        description: "the guest's OS family (linux or windows), when libvirt does not tell",
      },
    },
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
    examples: ['haven machines points web-01'],
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
    examples: ['haven jobs watch 3f9c2a1b'],
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
    examples: ['haven jobs cancel 3f9c2a1b'],
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
    examples: ['haven hosts domains primary'],
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
    summary: 'Create a one-time enrolment token for a new host (printed once)',
    examples: ['haven hosts enrolment-token --site dr --name kvm-dr-01 --ttl 1h'],
    options: {
      site: { type: 'string', value: 'SITE', description: 'the site the host joins (name or id)' },
      name: { type: 'string', value: 'NAME', description: 'the name the host must enrol with' },
      ttl: { type: 'string', value: 'DURATION', description: 'how long the token stays valid' },
    },
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
