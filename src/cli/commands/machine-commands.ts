import type { ApiClient } from '../../client/api-client.ts';
import type { Machine } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { ConsoleLog, MachineStatus, MirrorStatus, ShutdownResult } from '../../host/host-services.ts';
import { ago, formatDuration, parseDuration, parseSize } from '../../text/human-units.ts';
import {
  type Command,
  type CommandArgs,
  integer,
  type OptionSpec,
  positional,
  positionalRef,
  required,
  str,
  vaultCommand,
} from '../command.ts';
import { printJson } from '../output.ts';
import { show } from './crud-commands.ts';

const bad = (field: string, message: string) =>
  new HavenError('bad_request', `--${field}: ${message}`, { field });

function sizeOf(spec: string, text: string): number {
  try {
    return parseSize(text);
  } catch (error) {
    throw bad('disk', `'${spec}': ${(error as Error).message}`);
  }
}

/**
 * `--disk` specs: `ID=SIZE` (a new sparse image in the host's storage
 * folder), `ID=PATH:SIZE`, or the older `ID:SIZE:PATH`; sizes in bytes or
 * with K, M, G, T (binary).
 */
export function parseDiskSpec(spec: string): { id: string; sizeBytes: number; source?: string } {
  const eq = spec.indexOf('=');
  if (eq > 0) {
    const id = spec.slice(0, eq);
    const rest = spec.slice(eq + 1);
    const colon = rest.lastIndexOf(':');
    if (colon < 0) return { id, sizeBytes: sizeOf(spec, rest) };
    return { id, source: rest.slice(0, colon), sizeBytes: sizeOf(spec, rest.slice(colon + 1)) };
  }
  const [id = '', size = '', ...source] = spec.split(':');
  if (source.length === 0) throw bad('disk', `'${spec}' is not ID=SIZE, ID=PATH:SIZE or ID:SIZE:PATH`);
  return { id, sizeBytes: sizeOf(spec, size), source: source.join(':') };
}

/** --memory 4G, 512M or 2048 (MiB, as before units) → MiB. */
export function memoryMiB(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (/^\d+$/.test(text)) return Number(text);
  let bytes: number;
  try {
    bytes = parseSize(text);
  } catch (error) {
    throw bad('memory', `'${text}': ${(error as Error).message}`);
  }
  if (bytes % 2 ** 20 !== 0 || bytes === 0) throw bad('memory', `'${text}' is not a whole number of MiB`);
  return bytes / 2 ** 20;
}

/** `--nic NETWORK[,mac=MAC][,ip=ADDRESS/PREFIX|dhcp][,gateway=IP][,dns=IP]`. */
export function parseNicSpec(spec: string): Record<string, unknown> {
  const [network = '', ...settings] = spec.split(',');
  if (network === '' || network.includes('='))
    throw bad('nic', `'${spec}' does not start with a network name`);
  const nic: Record<string, unknown> = { network, mac: null, ip: { mode: 'dhcp' } };
  let gateway: string | null = null;
  const dns: string[] = [];
  let address: string | null = null;
  for (const setting of settings) {
    const [key, value = ''] = setting.split('=', 2) as [string, string?];
    if (key === 'mac') nic.mac = value;
    else if (key === 'gateway' || key === 'gw') gateway = value;
    else if (key === 'dns') dns.push(value);
    else if (key === 'ip') address = value;
    else throw bad('nic', `'${spec}': unknown setting '${key}' (mac, ip, gateway, dns)`);
  }
  if (address !== null && address !== 'dhcp') {
    const m = /^([^/]+)\/(\d{1,3})$/.exec(address);
    if (!m) throw bad('nic', `'${spec}': ip '${address}' is not ADDRESS/PREFIX (e.g. 10.0.0.5/24) or dhcp`);
    nic.ip = { mode: 'static', address: m[1], prefixLength: Number(m[2]), gateway, dns };
  }
  return nic;
}

export const createMachineOptions: OptionSpec = {
  host: { type: 'string', value: 'HOST', description: 'the host it runs on (name or id)' },
  disk: {
    type: 'string',
    multiple: true,
    value: 'ID=SIZE|ID=PATH:SIZE',
    description: 'a disk: a new sparse image of SIZE (1G, 512M) or the image at PATH',
  },
  nic: {
    type: 'string',
    multiple: true,
    value: 'NET[,mac=M][,ip=A/P|dhcp][,gw=IP][,dns=IP]',
    description: 'a NIC on network NET, and its address after a failover',
  },
  cpus: { type: 'string', value: 'N', description: 'virtual CPUs (default 1)' },
  memory: {
    type: 'string',
    value: 'SIZE',
    description: 'memory, e.g. 4G or 512M (a bare number is MiB; default 512M)',
  },
  kernel: { type: 'string', value: 'FILE', description: 'boot this kernel directly (instead of a disk)' },
  initrd: { type: 'string', value: 'FILE', description: 'initrd for --kernel' },
  cmdline: { type: 'string', value: 'TEXT', description: 'kernel command line for --kernel' },
  'boot-disk': { type: 'string', value: 'ID', description: 'boot from this --disk (default the first)' },
};

/** The POST /machines body of `haven machines create`. */
export function createMachineBody(args: CommandArgs): unknown {
  const name = positional(args, 0, 'name');
  const disks = ((args.values.disk as string[] | undefined) ?? []).map(parseDiskSpec);
  const bootDisk = str(args, 'boot-disk');
  const kernel = str(args, 'kernel');
  if (bootDisk !== undefined) {
    if (kernel !== undefined) throw bad('boot-disk', 'boot from a disk or from --kernel, not both');
    const index = disks.findIndex((d) => d.id === bootDisk);
    if (index < 0) throw bad('boot-disk', `'${bootDisk}' is not one of the --disk ids`);
    // The hypervisor boots from the first disk.
    disks.unshift(...disks.splice(index, 1));
  }
  if (kernel === undefined && (str(args, 'initrd') !== undefined || str(args, 'cmdline') !== undefined)) {
    throw bad('kernel', '--initrd and --cmdline need --kernel');
  }
  return {
    name,
    hostId: required(args, 'host'),
    disks,
    recoverySettings: {
      targetName: name,
      cpus: integer(str(args, 'cpus'), 'cpus') ?? 1,
      memoryMiB: memoryMiB(str(args, 'memory')) ?? 512,
      nics: ((args.values.nic as string[] | undefined) ?? []).map(parseNicSpec),
      ...(kernel === undefined
        ? {}
        : { boot: { kernel, initrd: str(args, 'initrd') ?? null, cmdline: str(args, 'cmdline') ?? '' } }),
    },
  };
}

const machinePath = async (client: ApiClient, args: CommandArgs, tail = '') =>
  `/machines/${encodeURIComponent(await positionalRef(client, args, 0, 'machine', 'machines'))}${tail}`;

export const machinePowerCommands: Command[] = [
  ...(['pause', 'resume'] as const).map((verb) =>
    vaultCommand({
      name: `machines ${verb}-protection`,
      summary:
        verb === 'pause'
          ? "Pause live protection of an imported libvirt domain (its mirror ends, the replica stays): before a live migration, a snapshot or another block job libvirt refuses while Haven's mirror runs"
          : 'Resume live protection of an imported libvirt domain: the mirror is armed again, only changed blocks sent',
      usage: 'MACHINE',
      examples: [`haven machines ${verb}-protection web-01`],
      run: async (args, { client, out }) => {
        const status = await client.post<MirrorStatus>(
          await machinePath(client, args, `/${verb}-protection`),
          {},
        );
        return show(out, status, [
          ['Domain', status.domain],
          ['Mirror', status.paused ? 'paused' : status.state],
          ['Last point', status.lastPointAt ? ago(status.lastPointAt) : 'none yet'],
        ]);
      },
    }),
  ),
  vaultCommand({
    name: 'machines start',
    summary: 'Start a machine on its host (its disks through the disk service)',
    usage: 'MACHINE',
    examples: ['haven machines start web-01'],
    run: async (args, { client, out }) => {
      const status = await client.post<MachineStatus>(await machinePath(client, args, '/start'), {});
      return show(out, status, [
        ['Machine', status.name],
        ['Power', status.state],
      ]);
    },
  }),
  vaultCommand({
    name: 'machines stop',
    summary: 'Shut a machine down through ACPI',
    usage: 'MACHINE',
    examples: ['haven machines stop web-01 --force-off-after 60s'],
    options: {
      timeout: {
        type: 'string',
        value: 'DURATION',
        description: 'fail if the guest is still up after this long',
      },
      'force-off-after': {
        type: 'string',
        value: 'DURATION',
        description: 'power the guest off if it is still up after this long',
      },
    },
    run: async (args, { client, out }) => {
      const timeout = str(args, 'timeout');
      const forceOff = str(args, 'force-off-after');
      if (timeout !== undefined && forceOff !== undefined) {
        throw bad('timeout', 'give --timeout or --force-off-after, not both');
      }
      const result = await client.post<ShutdownResult>(await machinePath(client, args, '/stop'), {
        ...(timeout === undefined ? {} : { timeoutSeconds: parseDuration(timeout, 'timeout') }),
        ...(forceOff === undefined
          ? {}
          : { forceOffAfterSeconds: parseDuration(forceOff, 'force-off-after') }),
      });
      return show(out, result, [
        ['Machine', result.name],
        ['Power', result.state],
        ['Outcome', `${result.outcome} after ${formatDuration(result.seconds)}`],
      ]);
    },
  }),
  vaultCommand({
    name: 'machines delete',
    summary: 'Delete an unprotected, stopped machine (its disk images stay)',
    usage: 'MACHINE',
    examples: ['haven machines delete web-01'],
    run: async (args, { client, out }) => {
      const path = await machinePath(client, args);
      const machine = await client.get<Machine>(path);
      await client.delete(path);
      if (!out.json) out.write(`machine ${machine.name} deleted\n`);
      return 0;
    },
  }),
  vaultCommand({
    name: 'console',
    summary: 'Serial console of a machine',
    usage: 'MACHINE',
    examples: ['haven console web-01 --tail 50 --follow'],
    options: {
      tail: { type: 'string', value: 'N', description: 'only the last N lines' },
      follow: { type: 'boolean', description: 'keep printing new lines until interrupted' },
    },
    run: async (args, { client, out }) => {
      const tail = integer(str(args, 'tail'), 'tail');
      const query = tail === undefined ? '' : `tail=${tail}`;
      if (!args.values.follow) {
        const log = await client.get<ConsoleLog>(
          await machinePath(client, args, `/console${query ? `?${query}` : ''}`),
        );
        if (out.json) {
          printJson(out, log);
          return 0;
        }
        for (const line of log.lines) out.write(`${line}\n`);
        return 0;
      }
      for await (const { event, data } of client.events(
        await machinePath(client, args, `/console?follow=1${query ? `&${query}` : ''}`),
      )) {
        if (event === 'line') out.write(`${data}\n`);
      }
      return 0;
    },
  }),
];
