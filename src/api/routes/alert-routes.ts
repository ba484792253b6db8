import { z } from 'zod';
import type { VaultContext } from '../../vault/vault-context.ts';
import * as r from '../response-schemas.ts';
import { type RouteDefinition, route } from '../route.ts';
import * as s from '../schemas.ts';

export function alertRoutes(vault: VaultContext): RouteDefinition[] {
  return [
    route({
      method: 'get',
      path: '/alerts',
      summary: 'List alerts (open ones with ?open=true)',
      tag: 'alerts',
      access: { kind: 'token', role: 'viewer' },
      query: s.listAlerts,
      response: z.strictObject({ alerts: z.array(r.alert) }),
      handler: async ({ query }) => ({
        alerts: await vault.store.alerts.list({
          ...(query.open ? { open: query.open === 'true' } : {}),
          ...(query.limit ? { limit: query.limit } : {}),
        }),
      }),
    }),
  ];
}
