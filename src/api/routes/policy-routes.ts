import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { isoNow } from '../../clock/index.ts';
import { assertEditable, assertValidPolicy } from '../../domain/index.ts';
import type { Policy } from '../../domain/model.ts';
import { HavenError, notFound } from '../../errors/index.ts';
import type { VaultContext } from '../../vault/vault-context.ts';
import * as r from '../response-schemas.ts';
import { type RouteDefinition, route } from '../route.ts';
import * as s from '../schemas.ts';

/** Checks a policy against the rules, then stores it (create or update) and returns it. */
async function validSaved(policy: Policy, save: (policy: Policy) => Promise<unknown>): Promise<Policy> {
  assertValidPolicy(policy);
  await save(policy);
  return policy;
}

export function policyRoutes(vault: VaultContext): RouteDefinition[] {
  const { store } = vault;
  const tag = 'policies';
  const policyOr404 = async (id: string) => {
    const policy = (await store.policies.get(id)) ?? (await store.policies.getByName(id));
    if (!policy) throw notFound('policy', id);
    return policy;
  };
  return [
    route({
      method: 'get',
      path: '/policies',
      summary: 'List replication policies',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: z.strictObject({ policies: z.array(r.policy) }),
      handler: async () => ({ policies: await store.policies.list() }),
    }),
    route({
      method: 'get',
      path: '/policies/:id',
      summary: 'Show a policy (by id or name)',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: r.policy,
      handler: async ({ params }) => policyOr404(params.id!),
    }),
    route({
      method: 'post',
      path: '/policies',
      summary: 'Create a policy',
      tag,
      access: { kind: 'token', role: 'admin' },
      body: s.createPolicy,
      response: r.policy,
      status: 201,
      handler: async ({ body }) => {
        if (await store.policies.getByName(body.name)) {
          throw new HavenError('conflict', `A policy named '${body.name}' already exists`, { field: 'name' });
        }
        const policy: Policy = { id: randomUUID(), ...body, builtIn: false, createdAt: isoNow(vault.clock) };
        return validSaved(policy, (p) => store.policies.create(p));
      },
    }),
    route({
      method: 'patch',
      path: '/policies/:id',
      summary: 'Edit a policy (built-in policies cannot be edited)',
      tag,
      access: { kind: 'token', role: 'admin' },
      body: s.updatePolicy,
      response: r.policy,
      handler: async ({ params, body }) => {
        const policy = await policyOr404(params.id!);
        assertEditable(policy);
        const updated: Policy = {
          ...policy,
          ...Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined)),
        };
        return validSaved(updated, (p) => store.policies.update(p));
      },
    }),
    route({
      method: 'delete',
      path: '/policies/:id',
      summary: 'Delete a policy no machine uses',
      tag,
      access: { kind: 'token', role: 'admin' },
      status: 204,
      response: r.noContent,
      handler: async ({ params }) => {
        const policy = await policyOr404(params.id!);
        assertEditable(policy);
        const users = (await store.machines.list()).filter((m) => m.policyId === policy.id);
        if (users.length > 0) {
          throw new HavenError(
            'conflict',
            `Policy '${policy.name}' is used by ${users.length} machine(s): ${users.map((m) => m.name).join(', ')}`,
            { policyId: policy.id, machines: users.map((m) => m.id) },
          );
        }
        await store.policies.delete(policy.id);
        return null;
      },
    }),
  ];
}
