import { z } from 'zod';
import * as r from '../response-schemas.ts';
import { type RouteDefinition, route } from '../route.ts';
import * as s from '../schemas.ts';

/** Who the caller is: the portal asks once after sign-in to decide what to show. */
export function sessionRoutes(): RouteDefinition[] {
  return [
    route({
      method: 'get',
      path: '/session',
      summary: "The calling token's name and role",
      tag: 'system',
      access: { kind: 'token', role: 'viewer' },
      response: s.withExample(z.strictObject({ tokenName: z.string(), role: r.role }), {
        tokenName: 'admin',
        role: 'admin',
      }),
      handler: async ({ actor }) => ({ tokenName: actor!.name, role: actor!.role }),
    }),
  ];
}
