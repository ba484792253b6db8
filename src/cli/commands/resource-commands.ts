import type { TargetProof } from '../../domain/drill.ts';
import {
  type Alert,
  type ApiToken,
  type Host,
  type Job,
  type Machine,
  outputOutsideSteps,
  type Policy,
  type RecoveryPoint,
  type Site,
} from '../../domain/model.ts';
import { REPLICATION_RESOLUTIONS, type ReplicationHistory } from '../../domain/replication-history.ts';
import { HavenError } from '../../errors/index.ts';
import type { HypervisorInventory } from '../../hypervisor/hypervisor.ts';
import { ago, formatBytes, formatDuration, parseDuration } from '../../text/human-units.ts';
import { jobTitle } from '../../text/job-title.ts';
import {
  type Command,
  type CommandArgs,
  type OptionSpec,
  positional,
  positionalRef,
  required,
  resolveOptionRefs,
  str,
  tableOptions,
  vaultCommand,
} from '../command.ts';
import { watchJob } from '../job-progress.ts';
import { type Column, type Output, printJson, printRecord, printTable } from '../output.ts';
import { pointLabel, resolveId, resolveRef, shortId } from '../resolve-ref.ts';
import { crudCommands, list, show } from './crud-commands.ts';
import { jobOutputLines } from './job-output-lines.ts';
import { createMachineBody, createMachineOptions, machinePowerCommands } from './machine-commands.ts';
import { between, jobTarget, localTime, printMachine } from './machine-summary.ts';

/** Prints a secret the vault shows once: bare, so scripts can capture it, or the whole answer with --json. */
function printSecret(out: Output, answer: { token: string }): number {
  if (out.json) {
    printJson(out, answer);
    return 0;
  }
  out.write(`${answer.token}\n`);
  return 0;
}

function printPolicy(out: Output, p: Policy): number {
  return show(out, p, [
    ['Policy', p.name],
    ['RPO', formatDuration(p.rpoThresholdSeconds)],
    ['Retention', formatDuration(p.retentionSeconds)],
    [
      'App-consistent every',
      p.appConsistentFrequencySeconds ? formatDuration(p.appConsistentFrequencySeconds) : 'never',
    ],
    ['Built in', p.builtIn ? 'yes' : 'no'],
    ['Id', p.id],
  ]);
}

function printSite(out: Output, site: Site): number {
  return show(out, site, [
    ['Site', site.name],
    ['Role', site.role],
    ['Test network', site.testNetwork],
    ['Network mapping', Object.entries(site.networkMapping).map(([a, b]) => `${a}→${b}`)],
    ['Id', site.id],
  ]);
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
    query: async (args, client) =>
      query(await resolveOptionRefs(client, args, { host: 'hosts' }, resolveId), {
        state: 'state',
        host: 'hostId',
      }),
    names: ['hosts'],
    columns: (names): Column<Machine>[] => [
      { header: 'Name', value: (m) => m.name },
      { header: 'State', value: (m) => m.state },
      { header: 'Health', value: (m) => m.health },
      { header: 'Host', value: (m) => names('hosts', m.activeHostId) },
      {
        header: 'RPO',
        value: (m) => (m.replication?.rpoSeconds == null ? null : formatDuration(m.replication.rpoSeconds)),
      },
      { header: 'Id', value: (m) => m.id, wide: true },
    ],
  },
  show: {
    summary: 'Show one machine: where it runs and is protected to, replication, drill, disks, NICs',
    names: ['hosts', 'policies'],
    related: (client, path) => client.get<TargetProof>(`${path}/proof`),
    print: printMachine,
  },
  create: {
    summary: 'Register a machine on a host, with its disks, NICs and boot settings',
    usage: 'NAME',
    examples: [
      'haven machines create web-01 --host primary --disk disk0=10G --nic lan,ip=10.0.0.5/24,gw=10.0.0.1',
      'haven machines create db-01 --host primary --disk disk0=/srv/images/db.img:40G --boot-disk disk0 --cpus 2 --memory 4096',
    ],
    options: createMachineOptions,
    refs: { host: 'hosts' },
    body: createMachineBody,
    print: (out, machine: Machine) =>
      show(out, machine, [
        ['Machine', machine.name],
        ['State', machine.state],
        ['Id', machine.id],
      ]),
  },
});

const policies = crudCommands({
  plural: 'policies',
  singular: 'policy',
  example: 'gold',
  list: {
    summary: 'List replication policies',
    columns: (): Column<Policy>[] => [
      { header: 'Name', value: (p) => p.name },
      { header: 'RPO', value: (p) => formatDuration(p.rpoThresholdSeconds) },
      { header: 'Retention', value: (p) => formatDuration(p.retentionSeconds) },
      {
        header: 'App-consistent every',
        value: (p) =>
          p.appConsistentFrequencySeconds ? formatDuration(p.appConsistentFrequencySeconds) : 'never',
      },
      { header: 'Built in', value: (p) => (p.builtIn ? 'yes' : 'no') },
      { header: 'Id', value: (p) => p.id, wide: true },
    ],
  },
  show: { summary: 'Show a policy', print: printPolicy },
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
    print: printPolicy,
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
    print: printPolicy,
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
      machine: { type: 'string', value: 'MACHINE', description: 'only jobs of this machine (name or id)' },
      plan: { type: 'string', value: 'PLAN', description: 'only jobs of this recovery plan (name or id)' },
      limit: { type: 'string', value: 'N', description: 'at most N jobs (default 50)' },
    },
    query: async (args, client) => {
      if (str(args, 'machine') !== undefined && str(args, 'plan') !== undefined) {
        throw new HavenError('bad_request', '--machine and --plan: give one (a job has one target)', {
          field: 'machine',
        });
      }
      const resolved = await resolveOptionRefs(
        client,
        args,
        { machine: 'machines', plan: 'plans' },
        resolveId,
      );
      return query(
        resolved,
        { state: 'state', machine: 'targetId', plan: 'targetId' },
        { limit: str(args, 'limit') ?? '50' },
      );
    },
    names: ['machines', 'plans', 'hosts'],
    columns: (names): Column<Job>[] => [
      { header: 'Id', value: (j) => shortId(j.id) },
      { header: 'Kind', value: (j) => j.kind },
      { header: 'Target', value: (j) => jobTarget(j, names) },
      { header: 'State', value: (j) => j.state },
      { header: 'Progress', value: (j) => `${j.progress}%` },
      { header: 'By', value: (j) => j.createdBy },
      { header: 'Created', value: (j) => ago(j.createdAt) },
      { header: 'Full id', value: (j) => j.id, wide: true },
    ],
  },
  show: {
    summary: 'Show a job and its steps',
    names: ['machines', 'plans', 'hosts'],
    print: (out, job: Job, names) => {
      if (out.json) {
        printJson(out, job);
        return 0;
      }
      printRecord(out, [
        ['Job', `${jobTitle(job)} ${shortId(job.id)}`],
        ['Kind', job.kind],
        ['Target', jobTarget(job, names)],
        ['State', `${job.state} (${job.progress}%)`],
        ['By', job.createdBy],
        ['Created', ago(job.createdAt)],
        ['Took', job.startedAt && job.finishedAt ? between(job.startedAt, job.finishedAt) : null],
        ['Error', job.error?.message],
        ['Id', job.id],
      ]);
      out.write('\n');
      printTable(out, job.steps, [
        { header: '#', value: (s) => s.index + 1 },
        { header: 'Step', value: (s) => s.title },
        { header: 'State', value: (s) => s.state },
        { header: 'Progress', value: (s) => `${s.progress}%` },
        {
          header: 'Took',
          value: (s) => (s.startedAt ? between(s.startedAt, s.finishedAt ?? new Date().toISOString()) : null),
        },
        { header: 'Message', value: (s) => s.error?.message ?? s.message },
      ]);
      for (const step of job.steps) {
        if (!step.output || Object.keys(step.output).length === 0) continue;
        out.write(`\n${step.index + 1}. ${step.title}:\n${jobOutputLines(step.output).join('\n')}\n`);
      }
      // Old jobs kept one output for the whole job: it is all here.
      const outside = outputOutsideSteps(job);
      if (Object.keys(outside).length > 0) out.write(`\nResults:\n${jobOutputLines(outside).join('\n')}\n`);
      return job.state === 'failed' ? 1 : 0;
    },
  },
});

const sites = crudCommands({
  plural: 'sites',
  singular: 'site',
  example: 'dr',
  list: {
    summary: 'List sites',
    columns: (): Column<Site>[] => [
      { header: 'Name', value: (s) => s.name },
      { header: 'Role', value: (s) => s.role },
      { header: 'Test network', value: (s) => s.testNetwork },
      {
        header: 'Network mapping',
        value: (s) => Object.entries(s.networkMapping).map(([a, b]) => `${a}→${b}`),
      },
      { header: 'Id', value: (s) => s.id, wide: true },
    ],
  },
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
    print: printSite,
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
    print: printSite,
  },
});

const hosts = crudCommands({
  plural: 'hosts',
  singular: 'host',
  example: 'recovery',
  list: {
    summary: 'List hosts and their heartbeats',
    names: ['sites'],
    columns: (names): Column<Host>[] => [
      { header: 'Name', value: (h) => h.name },
      { header: 'Site', value: (h) => names('sites', h.siteId) },
      { header: 'Status', value: (h) => h.status },
      { header: 'Last heartbeat', value: (h) => ago(h.lastHeartbeatAt) },
      { header: 'Version', value: (h) => h.version },
      { header: 'Capabilities', value: (h) => h.capabilities, wide: true },
      { header: 'Id', value: (h) => h.id, wide: true },
    ],
  },
  show: {
    summary: 'Show a host',
    names: ['sites'],
    print: (out, host: Host, names) =>
      show(out, host, [
        ['Host', host.name],
        ['Site', names('sites', host.siteId)],
        ['Status', host.status],
        ['Last heartbeat', ago(host.lastHeartbeatAt)],
        ['Version', host.version],
        ['Replication at', host.replicationAddress],
        ['Protects up to', `${host.maxProtectedDisks} disks`],
        ['Storage folders', host.storageFolders],
        ['Capabilities', host.capabilities],
        ['Enrolled', ago(host.enrolledAt)],
        ['Id', host.id],
      ]),
  },
});

const tokens = crudCommands({
  plural: 'tokens',
  singular: 'token id',
  example: '7d1e0c55',
  list: {
    summary: 'List API tokens',
    columns: (): Column<ApiToken>[] => [
      { header: 'Id', value: (t) => shortId(t.id) },
      { header: 'Name', value: (t) => t.name },
      { header: 'Role', value: (t) => t.role },
      { header: 'Last used', value: (t) => ago(t.lastUsedAt) },
      { header: 'Created', value: (t) => ago(t.createdAt) },
      { header: 'Full id', value: (t) => t.id, wide: true },
    ],
  },
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
    names: ['machines', 'hosts'],
    columns: (names): Column<Alert>[] => [
      { header: 'Severity', value: (a) => a.severity },
      {
        header: 'About',
        value: (a) =>
          a.subjectType === 'vault'
            ? 'vault'
            : `${a.subjectType} ${names(a.subjectType === 'host' ? 'hosts' : 'machines', a.subjectId)}`,
      },
      { header: 'Message', value: (a) => a.message },
      { header: 'Raised', value: (a) => ago(a.raisedAt) },
      { header: 'Cleared', value: (a) => (a.clearedAt ? ago(a.clearedAt) : 'open') },
      { header: 'Id', value: (a) => a.id, wide: true },
    ],
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
        hostId: await positionalRef(client, args, 0, 'host', 'hosts'),
        domain: positional(args, 1, 'domain'),
        ...(str(args, 'name') ? { name: str(args, 'name') } : {}),
        ...(str(args, 'os') ? { osFamily: str(args, 'os') } : {}),
      });
      return show(out, machine, [
        ['Machine', machine.name],
        ['State', machine.state],
        ['Id', machine.id],
      ]);
    },
  }),
  vaultCommand({
    name: 'machines points',
    summary: 'List recovery points of a machine',
    usage: 'MACHINE',
    options: tableOptions,
    examples: ['haven machines points web-01'],
    run: async (args, { client, out }) => {
      const { recoveryPoints } = await client.get<{ recoveryPoints: RecoveryPoint[] }>(
        `/machines/${encodeURIComponent(await positionalRef(client, args, 0, 'machine', 'machines'))}/recovery-points`,
      );
      return list(out, recoveryPoints, [
        { header: 'Time', value: (p) => localTime(p.time) },
        { header: 'Age', value: (p) => ago(p.time) },
        { header: 'Type', value: (p) => (p.groupPointId ? `${p.type} (group)` : p.type) },
        { header: 'Processed', value: (p) => (p.processed ? 'yes' : 'no') },
        { header: 'Size', value: (p) => formatBytes(p.sizeBytes) },
        { header: 'Point (for --point)', value: (p) => pointLabel(p) },
        { header: 'Id', value: (p) => p.id, wide: true },
      ]);
    },
  }),
  vaultCommand({
    name: 'machines history',
    summary: 'Replication throughput, bytes pending and RPO of a machine over time, as the vault kept them',
    usage: 'MACHINE',
    options: {
      since: {
        type: 'string',
        value: 'DURATION',
        description: 'how far back (default 1h; kept: 10 s samples for 1h, 1 min for 24h, 10 min for 30d)',
      },
      resolution: {
        type: 'string',
        value: 'DURATION',
        description: 'time per row: 10s, 1m or 10m (default the finest kept that far back)',
      },
    },
    examples: ['haven machines history web-01', 'haven machines history web-01 --since 7d'],
    run: async (args, { client, out }) => {
      const machine = await positionalRef(client, args, 0, 'machine', 'machines');
      const since = new Date(Date.now() - parseDuration(str(args, 'since') ?? '1h', 'since') * 1000);
      const resolution = str(args, 'resolution');
      const query = new URLSearchParams({ since: since.toISOString() });
      if (resolution) {
        const seconds = parseDuration(resolution, 'resolution');
        if (!(REPLICATION_RESOLUTIONS as readonly number[]).includes(seconds)) {
          throw new HavenError(
            'bad_request',
            `--resolution: '${resolution}' is not kept; the vault keeps ${REPLICATION_RESOLUTIONS.map(formatDuration).join(', ')}`,
            { field: 'resolution' },
          );
        }
        query.set('resolution', String(seconds));
      }
      const history = await client.get<ReplicationHistory>(
        `/machines/${encodeURIComponent(machine)}/replication-history?${query}`,
      );
      if (out.json) {
        printJson(out, history);
        return 0;
      }
      if (history.samples.length === 0) {
        out.write(
          `no replication figures since ${localTime(history.since)}: they are kept while the machine replicates\n`,
        );
        return 0;
      }
      printTable(out, history.samples, [
        { header: 'Time', value: (s) => localTime(s.at) },
        { header: 'Throughput', value: (s) => `${formatBytes(s.throughputBytesPerSec)}/s` },
        { header: 'Pending (most)', value: (s) => formatBytes(s.pendingBytes) },
        {
          header: 'RPO (worst)',
          value: (s) => (s.rpoSeconds === null ? 'no point' : formatDuration(s.rpoSeconds)),
        },
      ]);
      out.write(`${formatDuration(history.resolutionSeconds)} per row\n`);
      return 0;
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
      const job = await watchJob(client, await positionalRef(client, args, 0, 'job', 'jobs'), {
        tty: process.stdout.isTTY === true && !out.json,
        columns: process.stdout.columns,
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
      const id = await positionalRef(client, args, 0, 'job', 'jobs');
      const job = await client.post<Job>(`/jobs/${encodeURIComponent(id)}/cancel`);
      return show(out, job, [
        ['Job', `${jobTitle(job)} ${shortId(job.id)}`],
        ['Kind', job.kind],
        ['State', job.state],
        ['Cancel', job.cancelRequested ? 'requested' : 'not requested'],
      ]);
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
    options: tableOptions,
    run: async (args, { client, out }) => {
      const inventory = await client.get<HypervisorInventory>(
        `/hosts/${encodeURIComponent(await positionalRef(client, args, 0, 'host', 'hosts'))}/domains`,
      );
      if (out.json) {
        printJson(out, inventory);
        return 0;
      }
      return list(out, inventory.domains, [
        { header: 'Domain', value: (d) => d.name },
        { header: 'State', value: (d) => d.state },
        { header: 'CPUs', value: (d) => d.cpus },
        { header: 'Memory', value: (d) => formatBytes(d.memoryMiB * 2 ** 20) },
        {
          header: 'Disks',
          value: (d) =>
            d.disks.map(
              (k) =>
                `${k.target} ${k.format ?? '?'} ${k.virtualSizeBytes == null ? '?' : formatBytes(k.virtualSizeBytes)}`,
            ),
        },
        {
          header: 'NICs',
          value: (d) => d.nics.map((n) => `${n.network ?? n.type}${n.mac ? ` ${n.mac}` : ''}`),
        },
      ]);
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
        siteId: await resolveRef(client, 'sites', required(args, 'site')),
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
