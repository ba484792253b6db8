import { z } from 'zod';
import { addServer, issueServerEnrolment, setServerBmc } from '../../vault/servers/index.ts';
import type { VaultContext } from '../../vault/vault-context.ts';
import * as r from '../response-schemas.ts';
import { type RouteDefinition, route } from '../route.ts';
import * as s from '../schemas.ts';
import { machineOr404, presentMachine } from './machine-routes.ts';

/** Physical servers: onboarding (a machine of kind server and a one-time enrolment for its agent) and their list. */
export function serverRoutes(vault: VaultContext): RouteDefinition[] {
  const tag = 'servers';
  return [
    route({
      method: 'get',
      path: '/servers',
      summary: 'List physical servers (machines of kind server): enrolment and the live state of their legs',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: z.strictObject({ servers: z.array(r.machine) }),
      handler: async () => ({
        servers: (await vault.store.machines.list()).filter((m) => m.server).map(presentMachine),
      }),
    }),
    route({
      method: 'post',
      path: '/servers',
      summary:
        'Add a physical server: the machine (kind server, unprotected) and a one-time enrolment token (24 h, shown once) with the commands to run on it',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.addServer,
      status: 201,
      response: r.addedServer,
      handler: async ({ body, actor }) => {
        const { machine, ...enrolment } = await addServer(vault, body, actor!.name);
        return { machine: presentMachine(machine), ...enrolment };
      },
    }),
    route({
      method: 'post',
      path: '/servers/:id/enrolment',
      summary: 'Issue a new one-time enrolment token for a server (its earlier unused tokens stop working)',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.empty,
      status: 201,
      response: r.serverEnrolment,
      handler: async ({ params, actor }) =>
        issueServerEnrolment(vault, await machineOr404(vault, params.id!), actor!.name),
    }),
    route({
      method: 'patch',
      path: '/servers/:id',
      summary:
        "Set a server's BMC (IPMI: address, user, password; the password is stored apart and never shown), or remove it with null",
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.updateServer,
      response: r.machine,
      handler: async ({ params, body }) =>
        presentMachine(await setServerBmc(vault, await machineOr404(vault, params.id!), body.bmc)),
    }),
  ];
}
