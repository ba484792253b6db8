import type { ConsistencyGroup, GroupCut } from '../../vault/groups/index.ts';
import { type Command, connectionOptions, positional } from '../command.ts';
import { printJson, printRecord, printTable } from '../output.ts';
import { connect } from './resource-commands.ts';

const path = (name: string) => `/groups/${encodeURIComponent(name)}`;

function show(out: ReturnType<typeof connect>['out'], group: ConsistencyGroup): void {
  if (out.json) printJson(out, group);
  else
    printRecord(out, {
      name: group.name,
      machines: group.machineNames.join(', '),
      recoveryHost: group.recoveryHostId ?? '-',
      osFamily: group.osFamily ?? '-',
    });
}

export const groupCommands: Command[] = [
  {
    name: 'groups list',
    summary: 'List consistency groups',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      const { groups } = await client.get<{ groups: ConsistencyGroup[] }>('/groups');
      if (out.json) printJson(out, groups);
      else
        printTable(
          out,
          groups.map((g) => ({
            name: g.name,
            machines: g.machineNames.join(','),
            recoveryHost: g.recoveryHostId,
          })),
          ['name', 'machines', 'recoveryHost'],
        );
      return 0;
    },
  },
  {
    name: 'groups show',
    summary: 'Show a consistency group',
    usage: 'GROUP',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      show(out, await client.get<ConsistencyGroup>(path(positional(args, 0, 'group'))));
      return 0;
    },
  },
  {
    name: 'groups create',
    summary:
      'Create a consistency group: --machine M (repeatable, up to 16, one recovery host and OS family)',
    usage: 'GROUP',
    options: { ...connectionOptions, machine: { type: 'string', multiple: true } },
    run: async (args) => {
      const { client, out } = connect(args);
      const raw = args.values.machine;
      const machineIds = (Array.isArray(raw) ? raw : raw === undefined ? [] : [raw]).map(String);
      show(
        out,
        await client.post<ConsistencyGroup>('/groups', { name: positional(args, 0, 'group'), machineIds }),
      );
      return 0;
    },
  },
  {
    name: 'groups add',
    summary: 'Add a machine to a consistency group',
    usage: 'GROUP MACHINE',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      show(
        out,
        await client.post<ConsistencyGroup>(`${path(positional(args, 0, 'group'))}/members`, {
          machineId: positional(args, 1, 'machine'),
        }),
      );
      return 0;
    },
  },
  {
    name: 'groups remove',
    summary: 'Remove a machine from a consistency group (the last one ends the group)',
    usage: 'GROUP MACHINE',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      await client.delete(
        `${path(positional(args, 0, 'group'))}/members/${encodeURIComponent(positional(args, 1, 'machine'))}`,
      );
      if (!out.json) out.write('removed\n');
      return 0;
    },
  },
  {
    name: 'groups point',
    summary: 'Take a crash-consistent multi-machine point of the group now',
    usage: 'GROUP',
    options: connectionOptions,
    run: async (args) => {
      const { client, out } = connect(args);
      const cut = await client.post<GroupCut>(`${path(positional(args, 0, 'group'))}/points`, {});
      if (out.json) printJson(out, cut);
      else out.write(`point ${cut.groupPointId} (${cut.type}, writes held ${cut.elapsedMs} ms)\n`);
      return 0;
    },
  },
];
