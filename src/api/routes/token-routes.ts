import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { isoNow } from '../../clock/index.ts';
import { HavenError, notFound } from '../../errors/index.ts';
import { API_TOKEN_PREFIX, hashSecret, newSecret } from '../../vault/token-secret.ts';
import type { VaultContext } from '../../vault/vault-context.ts';
import * as r from '../response-schemas.ts';
import { type RouteDefinition, route } from '../route.ts';
import * as s from '../schemas.ts';

export function tokenRoutes(vault: VaultContext): RouteDefinition[] {
  const { store } = vault;
  const tag = 'tokens';
  return [
    route({
      method: 'get',
      path: '/tokens',
      summary: 'List API tokens (never their secrets)',
      tag,
      access: { kind: 'token', role: 'admin' },
      response: z.strictObject({ tokens: z.array(r.apiToken) }),
      handler: async () => ({ tokens: await store.tokens.list() }),
    }),
    route({
      method: 'post',
      path: '/tokens',
      summary: 'Create an API token with a role (the secret is shown once)',
      tag,
      access: { kind: 'token', role: 'admin' },
      body: s.createToken,
      response: r.createdToken,
      status: 201,
      handler: async ({ body }) => {
        const secret = newSecret(API_TOKEN_PREFIX);
        const token = {
          id: randomUUID(),
          name: body.name,
          role: body.role,
          createdAt: isoNow(vault.clock),
          lastUsedAt: null,
        };
        await store.tokens.create({ ...token, secretHash: hashSecret(secret) });
        return { ...token, token: secret };
      },
    }),
    route({
      method: 'delete',
      path: '/tokens/:id',
      summary: 'Revoke an API token',
      tag,
      access: { kind: 'token', role: 'admin' },
      status: 204,
      response: r.noContent,
      handler: async ({ params, actor }) => {
        const token = (await store.tokens.list()).find((t) => t.id === params.id);
        if (!token) throw notFound('token', params.id!);
        if (token.role === 'admin' && (await store.tokens.countByRole('admin')) === 1) {
          throw new HavenError(
            'conflict',
            `Token '${token.name}' is the last admin token; create another admin token first`,
          );
        }
        if (token.id === actor?.tokenId) {
          throw new HavenError('conflict', 'A token cannot revoke itself; use another admin token');
        }
        await store.tokens.delete(token.id);
        return null;
      },
    }),
  ];
}
