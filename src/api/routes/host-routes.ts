import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { isoNow } from '../../clock/index.ts';
import { createHostCredential } from '../../control/host-proof.ts';
import { DEFAULT_MAX_PROTECTED_DISKS } from '../../domain/index.ts';
import type { Host } from '../../domain/model.ts';
import { HavenError, notFound } from '../../errors/index.ts';
import { hostCapacity } from '../../vault/host-capacity.ts';
import { hostDomains } from '../../vault/import-domain.ts';
import { hashSecret, newEnrolmentToken, parseEnrolmentToken } from '../../vault/token-secret.ts';
import type { VaultContext } from '../../vault/vault-context.ts';
import * as r from '../response-schemas.ts';
import { type RouteDefinition, route } from '../route.ts';
import * as s from '../schemas.ts';

export function hostRoutes(vault: VaultContext): RouteDefinition[] {
  const { store } = vault;
  const tag = 'hosts';
  const hostOr404 = async (id: string) => {
    const host = (await store.hosts.get(id)) ?? (await store.hosts.getByName(id));
    if (!host) throw notFound('host', id);
    return host;
  };
  return [
    route({
      method: 'get',
      path: '/hosts',
      summary: 'List hosts with their heartbeat status',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: z.strictObject({ hosts: z.array(r.host) }),
      handler: async () => ({ hosts: await store.hosts.list() }),
    }),
    route({
      method: 'get',
      path: '/hosts/:id',
      summary: 'Show a host (by id or name)',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: r.host,
      handler: async ({ params }) => hostOr404(params.id!),
    }),
    route({
      method: 'get',
      path: '/hosts/:id/capacity',
      summary:
        'What the host holds as a recovery host (protected disks, its limit) and the free space of its data directory, asked of the host now',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: r.hostCapacity,
      handler: async ({ params }) => hostCapacity(vault, await hostOr404(params.id!)),
    }),
    route({
      method: 'get',
      path: '/hosts/:id/domains',
      summary:
        'The host’s hypervisor inventory: every domain with its disks (format, size, bus), NICs, CPUs, memory, boot and state',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: r.hostDomains,
      handler: async ({ params }) => {
        const host = await hostOr404(params.id!);
        return hostDomains(vault, host);
      },
    }),
    route({
      method: 'patch',
      path: '/hosts/:id',
      summary: 'Edit a host’s limits',
      tag,
      access: { kind: 'token', role: 'admin' },
      body: s.updateHost,
      response: r.host,
      handler: async ({ params, body }) => {
        const host = await hostOr404(params.id!);
        const updated: Host = {
          ...host,
          ...(body.maxProtectedDisks ? { maxProtectedDisks: body.maxProtectedDisks } : {}),
        };
        await store.hosts.update(updated);
        return updated;
      },
    }),
    route({
      method: 'delete',
      path: '/hosts/:id',
      summary: 'Remove a host that no machine uses',
      tag,
      access: { kind: 'token', role: 'admin' },
      status: 204,
      response: r.noContent,
      handler: async ({ params }) => {
        const host = await hostOr404(params.id!);
        const users = (await store.machines.list()).filter(
          (m) => m.primaryHostId === host.id || m.recoveryHostId === host.id || m.activeHostId === host.id,
        );
        if (users.length > 0) {
          throw new HavenError(
            'conflict',
            `Host '${host.name}' is used by machine(s) ${users.map((m) => m.name).join(', ')}`,
            {
              hostId: host.id,
            },
          );
        }
        await store.hosts.delete(host.id);
        return null;
      },
    }),
    route({
      method: 'post',
      path: '/enrolment-tokens',
      summary: 'Create a one-time host enrolment token (shown once)',
      tag,
      access: { kind: 'token', role: 'admin' },
      body: s.createEnrolmentToken,
      status: 201,
      response: s.withExample(
        z.strictObject({ token: z.string(), siteId: z.string(), expiresAt: z.iso.datetime() }),
        { token: 'hve_5c1d9e2a.Qm9…', siteId: 'dc2', expiresAt: '2026-03-02T10:30:00.000Z' },
      ),
      handler: async ({ body, actor }) => {
        const site = (await store.sites.get(body.siteId)) ?? (await store.sites.getByName(body.siteId));
        if (!site)
          throw new HavenError('bad_request', `siteId: site '${body.siteId}' does not exist`, {
            field: 'siteId',
          });
        const { token, ...issued } = newEnrolmentToken(vault.clock.now(), body.ttlSeconds * 1000);
        await store.enrolments.create({
          ...issued,
          siteId: site.id,
          hostName: body.hostName ?? null,
          createdBy: actor!.name,
          usedAt: null,
          usedByHostId: null,
        });
        return { token, siteId: site.id, expiresAt: issued.expiresAt };
      },
    }),
    route({
      method: 'post',
      path: '/hosts/enrol',
      summary: 'Enrol a host with a one-time enrolment token as bearer token',
      tag,
      access: { kind: 'enrolment' },
      body: s.enrolHost,
      status: 201,
      response: s.withExample(
        z.strictObject({
          hostId: z.string(),
          hostSecret: z.string(),
          controlAddress: z.string(),
          vaultFingerprint: z.string(),
        }),
        {
          hostId: 'a1b2c3d4-0002-4e5f-8a9b-0c1d2e3f4a5b',
          hostSecret: 'hhs_…',
          controlAddress: '10.0.1.5:8441',
          vaultFingerprint: 'sha256:9c:2e:…',
        },
      ),
      handler: async ({ body, bearer }) => {
        const parsed = parseEnrolmentToken(bearer ?? '');
        const refused = () => new HavenError('unauthenticated', 'Unknown, used or expired enrolment token');
        if (!parsed) throw refused();
        const token = await store.enrolments.get(parsed.id);
        if (!token || token.secretHash !== hashSecret(parsed.secret)) throw refused();
        if (token.hostName && token.hostName !== body.name) {
          throw new HavenError(
            'forbidden',
            `This enrolment token is for host '${token.hostName}', not '${body.name}'`,
            {
              field: 'name',
            },
          );
        }
        if (await store.hosts.getByName(body.name)) {
          throw new HavenError(
            'conflict',
            `A host named '${body.name}' is already enrolled; remove it first`,
            {
              field: 'name',
            },
          );
        }
        const hostId = randomUUID();
        const now = isoNow(vault.clock);
        if (!(await store.enrolments.consume(token.id, hostId, now))) throw refused();
        const credential = createHostCredential();
        const host: Host = {
          id: hostId,
          name: body.name,
          siteId: token.siteId,
          status: 'pending',
          replicationAddress: body.replicationAddress,
          replicationFingerprint: null,
          maxProtectedDisks: DEFAULT_MAX_PROTECTED_DISKS,
          capabilities: body.capabilities,
          storageFolders: body.storageFolders,
          version: body.version,
          lastHeartbeatAt: null,
          enrolledAt: now,
        };
        await store.hosts.create(host, credential.credentialHash);
        return { hostId, hostSecret: credential.hostSecret, ...vault.controlEndpoint() };
      },
    }),
  ];
}
