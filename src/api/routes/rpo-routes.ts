import { z } from 'zod';
import type { VaultContext } from '../../vault/vault-context.ts';
import { type RouteDefinition, route } from '../route.ts';
import * as s from '../schemas.ts';

/**
 * RPO of every protected machine in one answer: the portal's dashboard chart
 * needs it for hundreds of machines, and one request per machine would not
 * render in time.
 */
export function rpoRoutes(vault: VaultContext): RouteDefinition[] {
  const { store } = vault;
  return [
    route({
      method: 'get',
      path: '/rpo',
      summary:
        "RPO of each protected machine (seconds of writes not yet at the replica) against its policy's threshold",
      tag: 'machines',
      access: { kind: 'token', role: 'viewer' },
      response: z.strictObject({
        machines: z.array(
          s.withExample(
            z.strictObject({
              machineId: z.string(),
              machineName: z.string(),
              newestPointAt: z.iso.datetime().nullable(),
              rpoSeconds: z.number().nullable(),
              thresholdSeconds: z.number().nullable(),
            }),
            {
              machineId: '3f6c2a9e-7d41-4b8a-9e2f-1c5d8b7a4e60',
              machineName: 'web-01',
              newestPointAt: '2026-03-02T09:29:54.000Z',
              rpoSeconds: 4.2,
              thresholdSeconds: 300,
            },
          ),
        ),
      }),
      handler: async () => {
        const now = vault.clock.now().getTime();
        const thresholds = new Map((await store.policies.list()).map((p) => [p.id, p.rpoThresholdSeconds]));
        const machines = (await store.machines.list()).filter(
          (m) => m.policyId !== null && m.state !== 'unprotected',
        );
        const rows = [];
        for (const machine of machines) {
          let newest: string | null = null;
          for (const point of await store.recoveryPoints.list(machine.id)) {
            if (newest === null || point.time > newest) newest = point.time;
          }
          const measured = machine.replication?.rpoSeconds;
          rows.push({
            machineId: machine.id,
            machineName: machine.name,
            newestPointAt: newest,
            // The monitor's measurement (age of the oldest write not yet at the replica) when there is one.
            rpoSeconds:
              measured !== undefined && measured !== null
                ? measured
                : newest === null
                  ? null
                  : Math.max(0, (now - Date.parse(newest)) / 1000),
            thresholdSeconds: thresholds.get(machine.policyId!) ?? null,
          });
        }
        return { machines: rows };
      },
    }),
  ];
}
