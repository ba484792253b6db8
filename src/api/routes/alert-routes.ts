import { z } from 'zod';
import { isoNow } from '../../clock/index.ts';
import { HavenError, notFound } from '../../errors/index.ts';
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
    route({
      method: 'post',
      path: '/alerts/:id/acknowledge',
      summary: 'Acknowledge an open alert (it stays open until its condition clears)',
      tag: 'alerts',
      access: { kind: 'token', role: 'operator' },
      response: r.alert,
      handler: async ({ params, actor }) => {
        const alert = await vault.store.alerts.get(params.id!);
        if (!alert) throw notFound('alert', params.id!);
        if (alert.clearedAt !== null) {
          throw new HavenError(
            'conflict',
            `Alert '${alert.message}' cleared at ${alert.clearedAt}: only open alerts can be acknowledged`,
            { alertId: alert.id, clearedAt: alert.clearedAt },
          );
        }
        if (alert.acknowledged) return alert;
        const acknowledged = await vault.store.alerts.acknowledge(alert.id, {
          by: actor!.name,
          at: isoNow(vault.clock),
        });
        return acknowledged ?? alert;
      },
    }),
  ];
}
