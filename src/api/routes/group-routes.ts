import { z } from 'zod';
import {
  addMember,
  createGroup,
  cutGroupNow,
  getGroup,
  listGroups,
  removeMember,
} from '../../vault/groups/index.ts';
import type { VaultContext } from '../../vault/vault-context.ts';
import * as r from '../response-schemas.ts';
import { type RouteDefinition, route } from '../route.ts';
import * as s from '../schemas.ts';

const groupCreate = s.withExample(
  z
    .object({
      name: z.string().min(1).max(63),
      /** Machines by id or name. */
      machineIds: z.array(z.string().min(1)).min(1),
    })
    .strict(),
  { name: 'billing', machineIds: ['db-01', 'web-01'] },
);

const groupMember = s.withExample(z.object({ machineId: z.string().min(1) }).strict(), {
  machineId: 'web-02',
});

export function groupRoutes(vault: VaultContext): RouteDefinition[] {
  const tag = 'groups';
  return [
    route({
      method: 'get',
      path: '/groups',
      summary: 'List consistency groups (machines sharing multi-machine recovery points)',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: z.strictObject({ groups: z.array(r.consistencyGroup) }),
      handler: async () => ({ groups: await listGroups(vault) }),
    }),
    route({
      method: 'post',
      path: '/groups',
      summary:
        'Create a consistency group (up to 16 protected machines sharing a recovery host and OS family)',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: groupCreate,
      status: 201,
      response: r.consistencyGroup,
      handler: async ({ body }) => createGroup(vault, body.name, body.machineIds),
    }),
    route({
      method: 'get',
      path: '/groups/:name',
      summary: 'Show a consistency group',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: r.consistencyGroup,
      handler: async ({ params }) => getGroup(vault, params.name!),
    }),
    route({
      method: 'post',
      path: '/groups/:name/members',
      summary: 'Add a machine to a consistency group',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: groupMember,
      response: r.consistencyGroup,
      handler: async ({ params, body }) => addMember(vault, params.name!, body.machineId),
    }),
    route({
      method: 'delete',
      path: '/groups/:name/members/:machineId',
      summary: 'Remove a machine from a consistency group (removing the last one ends the group)',
      tag,
      access: { kind: 'token', role: 'operator' },
      status: 204,
      response: r.noContent,
      handler: async ({ params }) => {
        await removeMember(vault, params.name!, params.machineId!);
        return null;
      },
    }),
    route({
      method: 'post',
      path: '/groups/:name/points',
      summary: 'Take a crash-consistent multi-machine point of the group now; returns its groupPointId',
      tag,
      access: { kind: 'token', role: 'operator' },
      status: 201,
      response: r.groupCut,
      handler: async ({ params }) => cutGroupNow(vault, params.name!),
    }),
  ];
}
