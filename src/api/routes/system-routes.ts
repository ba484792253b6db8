import { join } from 'node:path';
import { z } from 'zod';
import type { VaultContext } from '../../vault/vault-context.ts';
import * as r from '../response-schemas.ts';
import { type RouteDefinition, route } from '../route.ts';
import * as s from '../schemas.ts';

export function systemRoutes(vault: VaultContext): RouteDefinition[] {
  return [
    route({
      method: 'get',
      path: '/health',
      summary: 'Liveness of the vault and its database (no token needed)',
      tag: 'system',
      access: { kind: 'public' },
      response: s.withExample(
        z.strictObject({
          status: z.literal('ok'),
          version: z.string(),
          database: z.enum(['sqlite', 'postgres']),
          time: z.iso.datetime(),
        }),
        { status: 'ok', version: '0.1.0', database: 'sqlite', time: '2026-03-02T09:30:00.000Z' },
      ),
      handler: async () => {
        await vault.store.settings.get('vault.identity');
        return {
          status: 'ok' as const,
          version: vault.version,
          database: vault.store.dialect,
          time: vault.clock.now().toISOString(),
        };
      },
    }),
    route({
      method: 'post',
      path: '/vault/backup',
      summary:
        'Back up the vault state (a job) to DATA/backups/FILE on the vault host (default haven-TIME.backup)',
      tag: 'system',
      access: { kind: 'token', role: 'admin' },
      body: s.backupVault,
      response: r.job,
      status: 202,
      handler: async ({ body, actor }) => {
        const stamp = vault.clock.now().toISOString().replace(/[:.]/g, '-');
        const file = join(vault.dataDir, 'backups', body.file ?? `haven-${stamp}.backup`);
        return vault.engine.submit({
          kind: 'vault-backup',
          targetType: 'vault',
          targetId: null,
          input: { file },
          createdBy: actor!.name,
        });
      },
    }),
  ];
}
