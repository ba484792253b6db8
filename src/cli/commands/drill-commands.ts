import { writeFile } from 'node:fs/promises';
import type { ApiClient } from '../../client/api-client.ts';
import {
  DRILL_POINT_CHOICES,
  DRILL_STATES,
  type DrillCadence,
  type DrillReport,
  type DrillRun,
  type DrillSchedule,
  describeCadence,
} from '../../domain/drill.ts';
import type { Job } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import { ago, formatDuration, parseDuration } from '../../text/human-units.ts';
import { drillReportHtml, drillReportMarkdown } from '../../vault/drills/drill-report.ts';
import {
  type Command,
  type CommandArgs,
  type OptionSpec,
  positionalRef,
  str,
  tableOptions,
  vaultCommand,
} from '../command.ts';
import { didYouMean } from '../did-you-mean.ts';
import { watchJob } from '../job-progress.ts';
import { type Output, printJson, printRecord, printTable } from '../output.ts';
import { resolveRef, shortId } from '../resolve-ref.ts';
import { printDrill } from './drill-summary.ts';
import { localTime } from './machine-summary.ts';

type Schedule = DrillSchedule & { targetName: string | null };

/** A value of `--name` that must be one of `choices`, with a guess at a typo. */
function oneOf<T extends string>(args: CommandArgs, name: string, choices: readonly T[]): T | undefined {
  const value = str(args, name);
  if (value === undefined || (choices as readonly string[]).includes(value)) return value as T | undefined;
  const guess = didYouMean(value, choices);
  throw new HavenError(
    'bad_request',
    `--${name} must be one of ${choices.join(', ')}, not '${value}'${guess ? ` (did you mean ${guess}?)` : ''}`,
    { field: name },
  );
}

/** Whole seconds of a duration option, or undefined when not given. */
function seconds(args: CommandArgs, name: string): number | undefined {
  const text = str(args, name);
  return text === undefined ? undefined : Math.round(parseDuration(text, name));
}

const settingOptions: OptionSpec = {
  point: {
    type: 'string',
    value: 'CHOICE',
    description: `which point to boot: ${DRILL_POINT_CHOICES.join(', ')} (default latest-crash-consistent)`,
  },
  network: {
    type: 'string',
    value: 'NETWORK',
    description: "the isolated test network (default the recovery site's)",
  },
  script: {
    type: 'string',
    value: 'SCRIPT',
    description: 'an application check: a script an admin registered (haven scripts list)',
  },
  'script-timeout': {
    type: 'string',
    value: 'DURATION',
    description: 'how long the script may run (default 5m)',
  },
  'no-filesystems': { type: 'boolean', description: "do not check the point's filesystems" },
  'console-pattern': {
    type: 'string',
    value: 'REGEX',
    description: 'the machine is up when its console shows this (default any output)',
  },
  'boot-timeout': {
    type: 'string',
    value: 'DURATION',
    description: 'how long to wait for it to come up (default 2m)',
  },
  'time-limit': {
    type: 'string',
    value: 'DURATION',
    description: 'the drill is cleaned up and fails when it runs longer (default 30m)',
  },
};

/** The settings the flags give, for a drill's body; only what was given. */
function settingsFrom(args: CommandArgs, current?: DrillSchedule): Record<string, unknown> {
  const point = oneOf(args, 'point', DRILL_POINT_CHOICES);
  const script = str(args, 'script');
  const scriptTimeout = seconds(args, 'script-timeout');
  const timeLimit = seconds(args, 'time-limit');
  const currentScript = current?.checks.script ?? null;
  const pattern = str(args, 'console-pattern');
  const bootTimeout = seconds(args, 'boot-timeout');
  const boot =
    pattern !== undefined || bootTimeout !== undefined
      ? {
          consolePattern: pattern ?? current?.checks.boot?.consolePattern ?? null,
          ...((bootTimeout ?? current?.checks.boot?.timeoutSeconds) !== undefined
            ? { timeoutSeconds: bootTimeout ?? current?.checks.boot?.timeoutSeconds }
            : {}),
        }
      : current?.checks.boot;
  const scriptName = args.values['no-script'] === true ? null : (script ?? currentScript?.name ?? null);
  return {
    ...(point ? { point } : {}),
    ...(str(args, 'network') ? { testNetwork: str(args, 'network') } : {}),
    ...(timeLimit !== undefined ? { timeLimitSeconds: timeLimit } : {}),
    checks: {
      filesystems:
        args.values['no-filesystems'] === true
          ? false
          : args.values.filesystems === true
            ? true
            : (current?.checks.filesystems ?? true),
      script:
        scriptName === null
          ? null
          : {
              name: scriptName,
              ...((scriptTimeout ?? currentScript?.timeoutSeconds) !== undefined
                ? { timeoutSeconds: scriptTimeout ?? currentScript?.timeoutSeconds }
                : {}),
            },
      ...(boot ? { boot } : {}),
    },
  };
}

const scheduleOptions: OptionSpec = {
  machine: { type: 'string', value: 'MACHINE', description: 'drill this machine (name or id)' },
  plan: { type: 'string', value: 'PLAN', description: 'drill this recovery plan (name or id)' },
  daily: { type: 'string', value: 'HH:MM', description: 'run every day at this time (24-hour)' },
  'time-zone': {
    type: 'string',
    value: 'ZONE',
    description: "the time zone of --daily, e.g. Europe/Amsterdam (default this computer's)",
  },
  every: { type: 'string', value: 'DURATION', description: 'run every so many whole hours, e.g. 6h' },
  ...settingOptions,
  'max-per-host': {
    type: 'string',
    value: 'N',
    description: 'at most N drills at once on one recovery host (default 2)',
  },
  'on-conflict': {
    type: 'string',
    value: 'wait|skip',
    description: 'when the machine is in a manual test failover: wait for it, or skip the run (default wait)',
  },
};

function cadenceFrom(args: CommandArgs): DrillCadence | undefined {
  const daily = str(args, 'daily');
  const every = str(args, 'every');
  if (daily !== undefined && every !== undefined)
    throw new HavenError('bad_request', 'give --daily or --every, not both', { field: 'daily' });
  if (daily !== undefined)
    return {
      kind: 'daily',
      at: daily,
      timeZone: str(args, 'time-zone') ?? Intl.DateTimeFormat().resolvedOptions().timeZone,
    };
  if (every !== undefined) return { kind: 'every', hours: parseDuration(every, 'every') / 3600 };
  return undefined;
}

function targetFrom(args: CommandArgs) {
  const machine = str(args, 'machine');
  const plan = str(args, 'plan');
  if (machine !== undefined && plan !== undefined)
    throw new HavenError('bad_request', 'give --machine or --plan, not both', { field: 'machine' });
  if (machine !== undefined) return { kind: 'machine', machine };
  if (plan !== undefined) return { kind: 'plan', plan };
  return undefined;
}

function maxPerHost(args: CommandArgs): number | undefined {
  const text = str(args, 'max-per-host');
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n))
    throw new HavenError('bad_request', `--max-per-host must be a whole number, not '${text}'`, {
      field: 'max-per-host',
    });
  return n;
}

/** The PUT body of a stored schedule with the flags given applied. */
function editedBody(schedule: DrillSchedule, args: CommandArgs, enabled = schedule.enabled) {
  const target =
    targetFrom(args) ??
    (schedule.target.kind === 'machine'
      ? { kind: 'machine', machine: schedule.target.machineId }
      : { kind: 'plan', plan: schedule.target.planId });
  return {
    name: schedule.name,
    target,
    cadence: cadenceFrom(args) ?? schedule.cadence,
    point: schedule.point,
    testNetwork: schedule.testNetwork,
    timeLimitSeconds: schedule.timeLimitSeconds,
    maxConcurrentPerHost: maxPerHost(args) ?? schedule.maxConcurrentPerHost,
    onConflict: oneOf(args, 'on-conflict', ['wait', 'skip'] as const) ?? schedule.onConflict,
    enabled,
    ...settingsFrom(args, schedule),
  };
}

function printSchedule(out: Output, s: Schedule): number {
  if (out.json) {
    printJson(out, s);
    return 0;
  }
  const checks = [
    'boot',
    s.checks.filesystems ? 'filesystems' : null,
    s.checks.script
      ? `script ${s.checks.script.name} (${formatDuration(s.checks.script.timeoutSeconds)})`
      : null,
  ].filter((c) => c !== null);
  printRecord(out, [
    ['Schedule', s.name],
    [s.target.kind === 'machine' ? 'Machine' : 'Plan', s.targetName ?? '(deleted)'],
    ['Cadence', describeCadence(s.cadence)],
    ['Point', s.point],
    ['Checks', checks.join(', ')],
    ['Test network', s.testNetwork ?? "the recovery site's"],
    ['Time limit', formatDuration(s.timeLimitSeconds)],
    ['Per host', `at most ${s.maxConcurrentPerHost} drills at once`],
    ['On conflict', s.onConflict === 'wait' ? 'wait for a manual test failover to end' : 'skip the run'],
    ['Next run', s.nextRunAt ? `${localTime(s.nextRunAt)}` : 'disabled'],
    ['Last run', s.lastRunAt ? `${localTime(s.lastRunAt)} (${ago(s.lastRunAt)})` : 'never'],
    ['Id', s.id],
  ]);
  return 0;
}

const scheduleCommand = (verb: string, summary: string, enabled: boolean): Command =>
  vaultCommand({
    name: `drills schedules ${verb}`,
    summary,
    usage: 'SCHEDULE',
    examples: [`haven drills schedules ${verb} nightly-web`],
    run: async (args, { client, out }) => {
      const path = await schedulePath(client, args);
      const current = await client.get<Schedule>(path);
      const saved = await client.request<Schedule>('PUT', path, editedBody(current, args, enabled));
      if (out.json) printJson(out, saved);
      else
        out.write(
          `schedule '${saved.name}' ${verb}d${saved.nextRunAt ? `; next run ${localTime(saved.nextRunAt)}` : ''}\n`,
        );
      return 0;
    },
  });

async function schedulePath(client: ApiClient, args: CommandArgs): Promise<string> {
  return `/drill-schedules/${encodeURIComponent(await positionalRef(client, args, 0, 'schedule', 'drill-schedules'))}`;
}

const runColumns = [
  { header: 'Drill', value: (d: DrillRun) => shortId(d.id) },
  { header: 'Target', value: (d: DrillRun) => `${d.target.kind} ${d.targetName}` },
  { header: 'State', value: (d: DrillRun) => d.state },
  { header: 'Started', value: (d: DrillRun) => ago(d.startedAt ?? d.createdAt) },
  {
    header: 'Took',
    value: (d: DrillRun) =>
      d.endedAt
        ? formatDuration((Date.parse(d.endedAt) - Date.parse(d.startedAt ?? d.createdAt)) / 1000)
        : null,
  },
  { header: 'RTO', value: (d: DrillRun) => (d.rtoSeconds === null ? null : formatDuration(d.rtoSeconds)) },
  {
    header: 'Checks',
    value: (d: DrillRun) => {
      const checks = d.machines.flatMap((m) => m.checks);
      const failed = checks.filter((c) => c.result === 'failed').length;
      return `${checks.filter((c) => c.result === 'passed').length} passed${failed ? `, ${failed} failed` : ''}`;
    },
  },
  { header: 'Reason', value: (d: DrillRun) => d.reason },
  { header: 'Id', value: (d: DrillRun) => d.id, wide: true },
];

export const drillCommands: Command[] = [
  vaultCommand({
    name: 'drills schedules list',
    summary: 'List drill schedules: what each drills, how often, and when next',
    options: tableOptions,
    examples: ['haven drills schedules list'],
    run: async (_args, { client, out }) => {
      const { schedules } = await client.get<{ schedules: Schedule[] }>('/drill-schedules');
      if (out.json) printJson(out, schedules);
      else
        printTable(out, schedules, [
          { header: 'Schedule', value: (s) => s.name },
          { header: 'Target', value: (s) => `${s.target.kind} ${s.targetName ?? '(deleted)'}` },
          { header: 'Cadence', value: (s) => describeCadence(s.cadence) },
          { header: 'Point', value: (s) => s.point },
          { header: 'Next run', value: (s) => (s.nextRunAt ? localTime(s.nextRunAt) : 'disabled') },
          { header: 'Id', value: (s) => s.id, wide: true },
        ]);
      return 0;
    },
  }),
  vaultCommand({
    name: 'drills schedules show',
    summary: 'Show a drill schedule: its target, cadence, checks, limits and next run',
    usage: 'SCHEDULE',
    examples: ['haven drills schedules show nightly-web'],
    run: async (args, { client, out }) =>
      printSchedule(out, await client.get<Schedule>(await schedulePath(client, args))),
  }),
  vaultCommand({
    name: 'drills schedules create',
    summary: 'Schedule drills of a machine or recovery plan',
    usage: 'NAME',
    options: { ...scheduleOptions, disabled: { type: 'boolean', description: 'create it disabled' } },
    examples: [
      'haven drills schedules create nightly-web --machine web-01 --daily 02:00 --time-zone Europe/Amsterdam --script check-web',
      'haven drills schedules create sample-db --machine db-01 --every 6h --point random-retained --time-limit 20m',
    ],
    run: async (args, { client, out }) => {
      const name = args.positionals[0];
      if (!name) throw new HavenError('bad_request', 'missing the schedule name', { field: 'name' });
      const target = targetFrom(args);
      if (!target)
        throw new HavenError('bad_request', '--machine or --plan is required: what the schedule drills', {
          field: 'machine',
        });
      const cadence = cadenceFrom(args);
      if (!cadence)
        throw new HavenError('bad_request', '--daily HH:MM or --every DURATION is required: how often', {
          field: 'daily',
        });
      const created = await client.post<Schedule>('/drill-schedules', {
        name,
        target,
        cadence,
        ...settingsFrom(args),
        ...(maxPerHost(args) !== undefined ? { maxConcurrentPerHost: maxPerHost(args) } : {}),
        ...(str(args, 'on-conflict')
          ? { onConflict: oneOf(args, 'on-conflict', ['wait', 'skip'] as const) }
          : {}),
        enabled: args.values.disabled !== true,
      });
      if (out.json) printJson(out, created);
      else
        out.write(
          `schedule '${created.name}' created: ${describeCadence(created.cadence)}${created.nextRunAt ? `, next run ${localTime(created.nextRunAt)}` : ', disabled'}\n`,
        );
      return 0;
    },
  }),
  vaultCommand({
    name: 'drills schedules edit',
    summary: 'Change a drill schedule: only the options given change',
    usage: 'SCHEDULE',
    options: {
      ...scheduleOptions,
      filesystems: { type: 'boolean', description: 'check filesystems again' },
      'no-script': { type: 'boolean', description: 'drop the application check' },
    },
    examples: [
      'haven drills schedules edit nightly-web --daily 03:30',
      'haven drills schedules edit nightly-web --script check-orders --script-timeout 2m',
    ],
    run: async (args, { client, out }) => {
      const path = await schedulePath(client, args);
      const current = await client.get<Schedule>(path);
      return printSchedule(out, await client.request<Schedule>('PUT', path, editedBody(current, args)));
    },
  }),
  scheduleCommand('enable', 'Enable a drill schedule (its next run is computed again)', true),
  scheduleCommand('disable', 'Disable a drill schedule (no more drills until enabled)', false),
  vaultCommand({
    name: 'drills schedules delete',
    summary: 'Delete a drill schedule (its drills and reports are kept)',
    usage: 'SCHEDULE',
    examples: ['haven drills schedules delete nightly-web'],
    run: async (args, { client, out }) => {
      await client.delete(await schedulePath(client, args));
      if (!out.json) out.write('deleted\n');
      return 0;
    },
  }),
  vaultCommand({
    name: 'drills run',
    summary:
      "Drill a protected machine, or a recovery plan (its order and actions, the whole plan's RTO), now: boot points on the isolated test network, check them, clean up; --wait follows it",
    usage: 'MACHINE | --plan PLAN',
    options: {
      ...settingOptions,
      plan: {
        type: 'string',
        value: 'PLAN',
        description: 'drill this recovery plan (name or id) instead of one machine',
      },
      wait: { type: 'boolean', description: 'follow the drill with its progress and print its result' },
    },
    examples: [
      'haven drills run web-01 --wait',
      'haven drills run db-01 --point random-retained --script check-db --time-limit 15m --wait',
      'haven drills run --plan shop --script check-web --wait',
    ],
    run: async (args, { client, out }) => {
      const plan = str(args, 'plan');
      if (plan !== undefined && args.positionals.length > 0) {
        throw new HavenError('bad_request', 'give a MACHINE or --plan PLAN, not both', { field: 'plan' });
      }
      const path =
        plan === undefined
          ? `/machines/${encodeURIComponent(await positionalRef(client, args, 0, 'machine', 'machines'))}/drills`
          : `/plans/${encodeURIComponent(await resolveRef(client, 'plans', plan))}/drills`;
      const { drill, job } = await client.post<{ drill: DrillRun; job: Job }>(path, settingsFrom(args));
      if (args.values.wait !== true) {
        if (out.json) printJson(out, drill);
        else
          out.write(
            `drill ${shortId(drill.id)} of ${drill.targetName} started (job ${shortId(job.id)}); haven drills show ${shortId(drill.id)}\n`,
          );
        return 0;
      }
      await watchJob(client, job.id, {
        tty: process.stdout.isTTY === true && !out.json,
        columns: process.stdout.columns,
        write: (t) => (out.json ? undefined : out.write(t)),
      });
      const ended = await client.get<DrillRun>(`/drills/${drill.id}`);
      if (!out.json) out.write('\n');
      printDrill(out, ended, null);
      return ended.state === 'passed' ? 0 : 1;
    },
  }),
  vaultCommand({
    name: 'drills list',
    summary: 'List drills, newest first, with their result, duration and RTO',
    options: {
      machine: { type: 'string', value: 'MACHINE', description: 'only drills of this machine (name or id)' },
      plan: { type: 'string', value: 'PLAN', description: 'only drills of this plan (name or id)' },
      schedule: { type: 'string', value: 'SCHEDULE', description: 'only drills this schedule started' },
      state: {
        type: 'string',
        value: 'STATE',
        description: `only drills in this state (${DRILL_STATES.join(', ')})`,
      },
      limit: { type: 'string', value: 'N', description: 'at most N drills (default 100)' },
      ...tableOptions,
    },
    examples: ['haven drills list --machine web-01', 'haven drills list --state failed'],
    run: async (args, { client, out }) => {
      const query = new URLSearchParams();
      for (const [option, collection] of [
        ['machine', 'machines'],
        ['plan', 'plans'],
        ['schedule', 'drill-schedules'],
      ] as const) {
        const text = str(args, option);
        if (text !== undefined) query.set(option, await resolveRef(client, collection, text));
      }
      const state = oneOf(args, 'state', DRILL_STATES);
      if (state) query.set('state', state);
      if (str(args, 'limit')) query.set('limit', str(args, 'limit')!);
      const { drills } = await client.get<{ drills: DrillRun[] }>(`/drills?${query}`);
      if (out.json) printJson(out, drills);
      else printTable(out, drills, runColumns);
      return 0;
    },
  }),
  vaultCommand({
    name: 'drills show',
    summary: "Show a drill: its point, each check's result in words, RTO and clean-up",
    usage: 'DRILL',
    examples: ['haven drills show d1e2f3a4'],
    run: async (args, { client, out }) => {
      const id = await positionalRef(client, args, 0, 'drill', 'drills');
      const drill = await client.get<DrillRun>(`/drills/${encodeURIComponent(id)}`);
      const schedule = drill.scheduleId
        ? await client.get<Schedule>(`/drill-schedules/${drill.scheduleId}`).catch(() => null)
        : null;
      return printDrill(out, drill, schedule?.name ?? null);
    },
  }),
  vaultCommand({
    name: 'drills report',
    summary: "A drill's report for auditors, as Markdown (default), HTML or JSON",
    usage: 'DRILL',
    options: {
      format: {
        type: 'string',
        value: 'markdown|html|json',
        description: 'the format (default from --out, else markdown)',
      },
      out: { type: 'string', value: 'FILE', description: 'write to FILE instead of standard output' },
    },
    examples: ['haven drills report d1e2f3a4 --out drill.html', 'haven drills report d1e2f3a4 --format json'],
    run: async (args, { client, out }) => {
      const file = str(args, 'out');
      const fromFile = file?.match(/\.html?$/i) ? 'html' : file?.match(/\.json$/i) ? 'json' : 'markdown';
      const format = oneOf(args, 'format', ['markdown', 'html', 'json'] as const) ?? fromFile;
      const id = await positionalRef(client, args, 0, 'drill', 'drills');
      // The vault leaves out what this token may not see; the page is rendered here from that.
      const report = await client.get<DrillReport>(`/drills/${encodeURIComponent(id)}/report?format=json`);
      const text =
        format === 'json'
          ? `${JSON.stringify(report, null, 2)}\n`
          : format === 'html'
            ? drillReportHtml(report)
            : drillReportMarkdown(report);
      if (file) {
        await writeFile(file, text);
        if (!out.json) out.write(`report of drill ${shortId(report.drill.id)} written to ${file}\n`);
      } else out.write(text);
      return 0;
    },
  }),
];
