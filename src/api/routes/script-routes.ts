import { z } from 'zod';
import type { ScriptRunRecord } from '../../domain/model.ts';
import { notFound } from '../../errors/index.ts';
import type { VaultContext } from '../../vault/vault-context.ts';
import * as r from '../response-schemas.ts';
import { type Actor, type RouteDefinition, roleAllows, route } from '../route.ts';
import * as s from '../schemas.ts';

/**
 * A run as the caller may see it: a script's output may hold what it read on
 * the systems it touched, so viewers get how it ended but not its output.
 */
function visibleRun(
  run: ScriptRunRecord,
  actor: Actor | null,
): ScriptRunRecord | Omit<ScriptRunRecord, 'output'> {
  if (actor && roleAllows(actor.role, 'operator')) return run;
  const { output, ...rest } = run;
  return rest;
}

export function scriptRoutes(vault: VaultContext): RouteDefinition[] {
  const tag = 'scripts';
  return [
    route({
      method: 'get',
      path: '/scripts',
      summary:
        "List the scripts plans may run: executables an admin put in the vault's scripts folder (with any problem that keeps one from running)",
      tag,
      access: { kind: 'token', role: 'operator' },
      response: z.strictObject({
        dir: s.withExample(z.string(), '/var/lib/haven/scripts'),
        scripts: z.array(r.registeredScript),
      }),
      handler: async () => ({
        dir: vault.scripts.registry.dir,
        scripts: await vault.scripts.registry.list(),
      }),
    }),
    route({
      method: 'get',
      path: '/script-runs',
      summary: 'List script runs, newest first (output only for operators and admins)',
      tag,
      access: { kind: 'token', role: 'viewer' },
      query: s.listScriptRuns,
      response: z.strictObject({ runs: z.array(r.scriptRun) }),
      handler: async ({ query, actor }) => ({
        runs: (await vault.store.scriptRuns.list(query)).map((run) => visibleRun(run, actor)),
      }),
    }),
    route({
      method: 'get',
      path: '/script-runs/:id',
      summary: 'Show a script run: who started it, which script, as which user, how it ended, its output',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: r.scriptRun,
      handler: async ({ params, actor }) => {
        const run = await vault.store.scriptRuns.get(params.id!);
        if (!run) throw notFound('script run', params.id!);
        return visibleRun(run, actor);
      },
    }),
  ];
}
