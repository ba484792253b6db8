import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { bmcUrlOf, parseBmcUrl } from '../../domain/index.ts';
import type { Machine, ServerBmc } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import { SERVER_AGENT_SCRIPT } from '../../server-agent/server-agent-script.ts';
import { ago, parseSize } from '../../text/human-units.ts';
import type { ServerEnrolmentIssued } from '../../vault/servers/index.ts';
import {
  type Command,
  type CommandArgs,
  integer,
  positional,
  positionalRef,
  required,
  str,
  tableOptions,
  vaultCommand,
} from '../command.ts';
import { type Output, printJson } from '../output.ts';
import { readSecretFile } from '../secret-file.ts';
import { list } from './crud-commands.ts';
import { memoryMiB, parseNicSpec } from './machine-commands.ts';

/** The server agent's script, as this checkout ships it (`haven servers agent-script`). */
const SERVER_AGENT_PATH = fileURLToPath(SERVER_AGENT_SCRIPT);

/** `--disk ID:DEVICE:SIZE`: a protected block device of the server (the device itself may hold no ':'). */
export function parseServerDisk(spec: string): { id: string; device: string; sizeBytes: number } {
  const first = spec.indexOf(':');
  const last = spec.lastIndexOf(':');
  if (first <= 0 || last === first) {
    throw new HavenError('bad_request', `--disk: '${spec}' is not ID:DEVICE:SIZE (e.g. disk0:/dev/sda:64G)`, {
      field: 'disk',
    });
  }
  return {
    id: spec.slice(0, first),
    device: spec.slice(first + 1, last),
    sizeBytes: parseSize(spec.slice(last + 1)),
  };
}

const bmcOptions = {
  bmc: {
    type: 'string',
    value: 'ipmi://USER@HOST[:PORT][?cipher=N]',
    description:
      "the server's BMC, reached from its primary-site host: Haven powers the server through it (a verified fence, planned failover, failback)",
  },
  'bmc-password-file': {
    type: 'string',
    value: 'FILE',
    description: "a file holding the BMC user's password (stored apart in the vault, never shown)",
  },
} as const;

/** --bmc and its password file, both or neither. */
async function bmcOf(args: CommandArgs): Promise<(ServerBmc & { password: string }) | undefined> {
  const url = str(args, 'bmc');
  const file = str(args, 'bmc-password-file');
  if (url === undefined && file === undefined) return undefined;
  if (url === undefined || file === undefined) {
    throw new HavenError('bad_request', '--bmc and --bmc-password-file go together', {
      field: url === undefined ? 'bmc' : 'bmc-password-file',
    });
  }
  return { ...parseBmcUrl(url, '--bmc'), password: await readSecretFile(file, 'bmc-password-file') };
}

/** The token (once), what to run on the server, and how its writes reach the leg. */
function printEnrolment(out: Output, name: string, enrolment: ServerEnrolmentIssued): void {
  out.write(
    `enrolment token for server ${name} (shown once, expires ${enrolment.expiresAt}):\n  ${enrolment.token}\n`,
  );
  out.write(`writes: ${enrolment.writeOrdering}\n\n`);
  out.write('run on the server, as root:\n\n');
  out.write(`${enrolment.commands.join('\n')}\n`);
}

export const serverCommands: Command[] = [
  vaultCommand({
    name: 'servers add',
    summary:
      'Add a physical Linux server: its machine (kind server) and a one-time enrolment, with the commands to run on it',
    usage: 'NAME',
    examples: [
      'haven servers add db-01 --site primary --disk disk0:/dev/sda:64G --cpus 4 --memory 8G --network lan',
      'haven servers add files-01 --site primary --host kvm-a --disk data:/dev/sdb:2T --write-behind 256',
    ],
    options: {
      site: { type: 'string', value: 'SITE', description: 'the primary site, where its NBD legs connect' },
      host: {
        type: 'string',
        value: 'HOST',
        description: "that site's host serving its legs (default the first connected one)",
      },
      disk: {
        type: 'string',
        multiple: true,
        value: 'ID:DEVICE:SIZE',
        description:
          'a protected block device: its disk id, its path on the server, its size (e.g. disk0:/dev/sda:64G)',
      },
      'write-behind': {
        type: 'string',
        value: 'N',
        description:
          'let md acknowledge up to N writes before the NBD leg has them (slow links; a point may then lack acknowledged writes)',
      },
      'nbd-timeout': {
        type: 'string',
        value: 'SECONDS',
        description: 'a cut link fails the NBD leg after this long instead of hanging I/O (default 30)',
      },
      cpus: {
        type: 'string',
        value: 'N',
        description: 'CPUs of the VM it becomes at the recovery site (default 1)',
      },
      memory: {
        type: 'string',
        value: 'SIZE',
        description: 'memory of that VM, e.g. 8G (a bare number is MiB; default 1G)',
      },
      network: {
        type: 'string',
        multiple: true,
        value: 'NET[,mac=M][,ip=A/P|dhcp][,gw=IP][,dns=IP]',
        description: "a NIC of that VM on the server's network NET",
      },
      ...bmcOptions,
    },
    run: async (args, { client, out }) => {
      const name = positional(args, 0, 'name');
      const bmc = await bmcOf(args);
      const writeBehind = integer(str(args, 'write-behind'), 'write-behind');
      const timeout = integer(str(args, 'nbd-timeout'), 'nbd-timeout');
      const host = str(args, 'host');
      const added = await client.post<{ machine: Machine } & ServerEnrolmentIssued>('/servers', {
        name,
        siteId: required(args, 'site'),
        ...(host === undefined ? {} : { hostId: host }),
        disks: ((args.values.disk as string[] | undefined) ?? []).map(parseServerDisk),
        writeBehind: writeBehind ?? null,
        ...(timeout === undefined ? {} : { nbdTimeoutSeconds: timeout }),
        ...(bmc === undefined ? {} : { bmc }),
        recoverySettings: {
          targetName: name,
          cpus: integer(str(args, 'cpus'), 'cpus') ?? 1,
          memoryMiB: memoryMiB(str(args, 'memory')) ?? 1024,
          nics: ((args.values.network as string[] | undefined) ?? []).map(parseNicSpec),
        },
      });
      if (out.json) printJson(out, added);
      else {
        out.write(`server ${added.machine.name} added (${added.machine.state}, id ${added.machine.id})\n`);
        printEnrolment(out, added.machine.name, added);
      }
      return 0;
    },
  }),
  vaultCommand({
    name: 'servers enrolment',
    summary:
      "Issue a new one-time enrolment token for a server's agent (its earlier unused tokens stop working)",
    usage: 'NAME',
    examples: ['haven servers enrolment db-01'],
    run: async (args, { client, out }) => {
      const id = await positionalRef(client, args, 0, 'server', 'machines');
      const enrolment = await client.post<ServerEnrolmentIssued>(
        `/servers/${encodeURIComponent(id)}/enrolment`,
        {},
      );
      if (out.json) printJson(out, enrolment);
      else printEnrolment(out, positional(args, 0, 'server'), enrolment);
      return 0;
    },
  }),
  vaultCommand({
    name: 'servers update',
    summary: "Change a server's BMC (--bmc with --bmc-password-file), or remove it (--no-bmc)",
    usage: 'NAME',
    examples: [
      'haven servers update db-01 --bmc ipmi://haven@10.0.9.21 --bmc-password-file bmc.pass',
      'haven servers update db-01 --no-bmc',
    ],
    options: {
      ...bmcOptions,
      'no-bmc': {
        type: 'boolean',
        description: 'the server has no BMC any more (its power is never seen again)',
      },
    },
    run: async (args, { client, out }) => {
      const id = await positionalRef(client, args, 0, 'server', 'machines');
      const bmc = await bmcOf(args);
      const none = args.values['no-bmc'] === true;
      if ((bmc === undefined) === !none) {
        throw new HavenError('bad_request', 'give either --bmc (with --bmc-password-file) or --no-bmc', {
          field: 'bmc',
        });
      }
      const machine = await client.patch<Machine>(`/servers/${encodeURIComponent(id)}`, {
        bmc: bmc ?? null,
      });
      if (out.json) printJson(out, machine);
      else {
        const set = machine.server?.bmc;
        out.write(
          set
            ? `server ${machine.name}: BMC ${bmcUrlOf(set)} (its password stored)\n`
            : `server ${machine.name}: no BMC\n`,
        );
      }
      return 0;
    },
  }),
  vaultCommand({
    name: 'servers list',
    summary:
      "List physical servers: enrolled when, and their legs' live state (haven machines show NAME for one)",
    examples: ['haven servers list'],
    options: tableOptions,
    run: async (_args, { client, out }) => {
      const { servers } = await client.get<{ servers: Machine[] }>('/servers');
      return list(out, servers, [
        { header: 'Name', value: (m) => m.name },
        { header: 'State', value: (m) => m.state },
        { header: 'Health', value: (m) => m.health },
        { header: 'Enrolled', value: (m) => (m.server?.enrolledAt ? ago(m.server.enrolledAt) : 'not yet') },
        { header: 'Link', value: (m) => m.replication?.server?.state ?? 'not replicating' },
        { header: 'Problem', value: (m) => m.replication?.server?.problem ?? null },
        { header: 'BMC', value: (m) => (m.server?.bmc ? bmcUrlOf(m.server.bmc) : 'none'), wide: true },
        { header: 'Id', value: (m) => m.id, wide: true },
      ]);
    },
  }),
  {
    name: 'servers agent-script',
    summary: 'Print the server agent (a POSIX shell script) to install on a server as haven-server-agent',
    examples: ['haven servers agent-script > /usr/local/sbin/haven-server-agent'],
    run: async () => {
      const script = await readFile(SERVER_AGENT_PATH, 'utf8').catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
        throw new HavenError(
          'not_found',
          `the server agent is not part of this installation (no ${SERVER_AGENT_PATH})`,
          { path: SERVER_AGENT_PATH },
        );
      });
      process.stdout.write(script);
      return 0;
    },
  },
];
