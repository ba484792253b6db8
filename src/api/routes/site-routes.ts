import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { isoNow } from '../../clock/index.ts';
import type { Site } from '../../domain/model.ts';
import { HavenError, notFound } from '../../errors/index.ts';
import type { VaultContext } from '../../vault/vault-context.ts';
import * as r from '../response-schemas.ts';
import { type RouteDefinition, route } from '../route.ts';
import * as s from '../schemas.ts';

export function siteRoutes(vault: VaultContext): RouteDefinition[] {
  const { store } = vault;
  const tag = 'sites';
  const siteOr404 = async (id: string) => {
    const site = (await store.sites.get(id)) ?? (await store.sites.getByName(id));
    if (!site) throw notFound('site', id);
    return site;
  };
  return [
    route({
      method: 'get',
      path: '/sites',
      summary: 'List sites',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: z.strictObject({ sites: z.array(r.site) }),
      handler: async () => ({ sites: await store.sites.list() }),
    }),
    route({
      method: 'get',
      path: '/sites/:id',
      summary: 'Show a site (by id or name)',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: r.site,
      handler: async ({ params }) => siteOr404(params.id!),
    }),
    route({
      method: 'post',
      path: '/sites',
      summary: 'Create a site',
      tag,
      access: { kind: 'token', role: 'admin' },
      body: s.createSite,
      response: r.site,
      status: 201,
      handler: async ({ body }) => {
        if (await store.sites.getByName(body.name)) {
          throw new HavenError('conflict', `A site named '${body.name}' already exists`, { field: 'name' });
        }
        const site: Site = { id: randomUUID(), ...body, createdAt: isoNow(vault.clock) };
        await store.sites.create(site);
        return site;
      },
    }),
    route({
      method: 'patch',
      path: '/sites/:id',
      summary: 'Edit a site’s network mapping and test network',
      tag,
      access: { kind: 'token', role: 'admin' },
      body: s.updateSite,
      response: r.site,
      handler: async ({ params, body }) => {
        const site = await siteOr404(params.id!);
        const updated: Site = {
          ...site,
          ...(body.networkMapping !== undefined ? { networkMapping: body.networkMapping } : {}),
          ...(body.testNetwork !== undefined ? { testNetwork: body.testNetwork } : {}),
        };
        await store.sites.update(updated);
        return updated;
      },
    }),
  ];
}
