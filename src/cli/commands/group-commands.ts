import type { ConsistencyGroup, GroupCut } from '../../vault/groups/index.ts';
import { type Command, positional, positionalRef, vaultCommand } from '../command.ts';
import { type Column, type Output, printJson, printRecord } from '../output.ts';
import type { Names } from '../resolve-ref.ts';
import { crudCommands } from './crud-commands.ts';

const path = (name: string) => `/groups/${encodeURIComponent(name)}`;

function show(out: Output, group: ConsistencyGroup, names?: Names): number {
  if (out.json) printJson(out, group);
  else
    printRecord(out, [
      ['Group', group.name],
      ['Machines', group.machineNames],
      ['Recovery host', names ? names('hosts', group.recoveryHostId) : group.recoveryHostId],
      ['OS family', group.osFamily],
    ]);
  return 0;
}

const groups = crudCommands({
  plural: 'groups',
  singular: 'group',
  example: 'erp',
  list: {
    summary: 'List consistency groups',
    names: ['hosts'],
    columns: (names): Column<ConsistencyGroup>[] => [
      { header: 'Group', value: (g) => g.name },
      { header: 'Machines', value: (g) => g.machineNames },
      { header: 'Recovery host', value: (g) => names('hosts', g.recoveryHostId) },
    ],
  },
  show: { summary: 'Show a consistency group', names: ['hosts'], print: show },
  create: {
    summary: 'Create a consistency group: machines recovered to one point in time',
    usage: 'GROUP',
    examples: ['haven groups create erp --machine erp-db --machine erp-app'],
    refs: { machine: 'machines' },
    options: {
      machine: {
        type: 'string',
        multiple: true,
        value: 'MACHINE',
        description: 'a member (up to 16, sharing one recovery host and OS family)',
      },
    },
    body: (args) => {
      const raw = args.values.machine;
      const machineIds = (Array.isArray(raw) ? raw : raw === undefined ? [] : [raw]).map(String);
      return { name: positional(args, 0, 'group'), machineIds };
    },
    print: (out: Output, group: ConsistencyGroup) => show(out, group),
  },
});

export const groupCommands: Command[] = [
  groups.list,
  groups.show,
  groups.create,
  vaultCommand({
    name: 'groups add',
    summary: 'Add a machine to a consistency group',
    usage: 'GROUP MACHINE',
    examples: ['haven groups add erp erp-cache'],
    run: async (args, { client, out }) => {
      return show(
        out,
        await client.post<ConsistencyGroup>(`${path(positional(args, 0, 'group'))}/members`, {
          machineId: await positionalRef(client, args, 1, 'machine', 'machines'),
        }),
      );
    },
  }),
  vaultCommand({
    name: 'groups remove',
    summary: 'Remove a machine from a consistency group (the last one ends the group)',
    usage: 'GROUP MACHINE',
    examples: ['haven groups remove erp erp-cache'],
    run: async (args, { client, out }) => {
      await client.delete(
        `${path(positional(args, 0, 'group'))}/members/${encodeURIComponent(await positionalRef(client, args, 1, 'machine', 'machines'))}`,
      );
      if (!out.json) out.write('removed\n');
      return 0;
    },
  }),
  vaultCommand({
    name: 'groups point',
    summary: 'Take a crash-consistent multi-machine point of the group now',
    usage: 'GROUP',
    examples: ['haven groups point erp'],
    run: async (args, { client, out }) => {
      const cut = await client.post<GroupCut>(`${path(positional(args, 0, 'group'))}/points`, {});
      if (out.json) printJson(out, cut);
      else out.write(`point ${cut.groupPointId} (${cut.type}, writes held ${cut.elapsedMs} ms)\n`);
      return 0;
    },
  }),
];
