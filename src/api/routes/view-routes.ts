import { z } from 'zod';
import { PointAccess } from '../../vault/point-access.ts';
import type { VaultContext } from '../../vault/vault-context.ts';
import * as r from '../response-schemas.ts';
import { type RouteDefinition, route } from '../route.ts';
import * as s from '../schemas.ts';
import { machineOr404, recoveryPointsOf } from './machine-routes.ts';

/** Recovery points opened to NBD clients: `haven view` and `haven export` use them. */
export function viewRoutes(vault: VaultContext): RouteDefinition[] {
  const access = new PointAccess(vault);
  const tag = 'Views';
  return [
    route<z.infer<typeof s.openPointView>>({
      method: 'post',
      path: '/machines/:id/views',
      summary:
        'Open a recovery point as NBD exports (one per disk) over TLS with a key made for the view, until it expires or is closed; a writable view never changes the replica',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.openPointView,
      status: 201,
      response: z.strictObject({ view: r.openedAccessView }),
      handler: async ({ params, body, actor }) => {
        const machine = await machineOr404(vault, params.id!);
        const { recoveryPoints } = await recoveryPointsOf(vault, machine);
        const view = await access.open(machine, {
          point: body.recoveryPoint,
          catalog: recoveryPoints,
          writable: body.writable,
          ttlSeconds: body.expiresInSeconds,
          openedBy: actor!.name,
        });
        return { view };
      },
    }),
    route<undefined, z.infer<typeof s.pointViewQuery>>({
      method: 'get',
      path: '/views',
      summary: 'List the open views of recovery points (their keys are never shown again)',
      tag,
      access: { kind: 'token', role: 'viewer' },
      query: s.pointViewQuery,
      response: z.strictObject({ views: z.array(r.accessView) }),
      handler: async ({ query }) => ({ views: await access.list(query.machineId) }),
    }),
    route({
      method: 'get',
      path: '/views/:id',
      summary:
        'Show a view of a recovery point: open, or when and why it closed (expired, closed, its host no longer serves it)',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: z.strictObject({ view: r.accessView }),
      handler: async ({ params }) => ({ view: await access.get(params.id!) }),
    }),
    route({
      method: 'delete',
      path: '/views/:id',
      summary: 'Close a view: its exports end, a writable view’s writes are dropped',
      tag,
      access: { kind: 'token', role: 'operator' },
      status: 204,
      response: r.noContent,
      handler: async ({ params, actor }) => {
        await access.close(params.id!, actor!.name);
        return null;
      },
    }),
  ];
}
