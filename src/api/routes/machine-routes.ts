import { join } from 'node:path';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import { isoNow } from '../../clock/index.ts';
import { ALL_OPERATIONS, allowedOperations, type LifecycleOperation } from '../../domain/index.ts';
import type { Machine, MachineState, RecoveryPoint } from '../../domain/model.ts';
import { tierFor } from '../../domain/replication-history.ts';
import { HavenError, notFound } from '../../errors/index.ts';
import { checkBootPaths, checkSourcePath } from '../../host/storage-folders.ts';
import { hostServices } from '../../vault/host-call.ts';
import { type ImportDomainRequest, importDomain } from '../../vault/import-domain.ts';
import { operationCheck, recoveryProblems } from '../../vault/lifecycle/operation-checks.ts';
import {
  type OperationOptions,
  type RecoveryPointChoice,
  withOptions,
} from '../../vault/lifecycle/operation-options.ts';
import { requestOperation } from '../../vault/lifecycle/request-operation.ts';
import {
  checkPowerAllowed,
  checkRunnable,
  consoleOf,
  followConsole,
  removeFromHost,
  startMachine,
  stopMachine,
} from '../../vault/machine-power.ts';
import { setProtectionPaused } from '../../vault/mirror-protection.ts';
import { newMachine } from '../../vault/new-machine.ts';
import { replicaHostOf } from '../../vault/replica-host.ts';
import type { VaultContext } from '../../vault/vault-context.ts';
import * as r from '../response-schemas.ts';
import { type RouteDefinition, route } from '../route.ts';
import * as s from '../schemas.ts';

/** A machine as the API shows it: the stored record plus what may be done with it now. */
export function presentMachine(machine: Machine): Machine & { allowedOperations: LifecycleOperation[] } {
  return { ...machine, allowedOperations: allowedOperations(machine.state) };
}

export async function machineOr404(vault: VaultContext, id: string): Promise<Machine> {
  const machine = (await vault.store.machines.get(id)) ?? (await vault.store.machines.getByName(id));
  if (!machine) throw notFound('machine', id);
  return machine;
}

/** The machine's recovery points: the replica store is the source of truth; the vault keeps only what it was told last. */
export async function recoveryPointsOf(
  vault: VaultContext,
  machine: Machine,
): Promise<{ recoveryPoints: RecoveryPoint[]; source: 'replica-store' | 'vault' }> {
  const replicaHost = replicaHostOf(machine);
  if (replicaHost && vault.hosts.isConnected(replicaHost)) {
    const points = await hostServices(vault, replicaHost).replica.listPoints({ machineId: machine.id });
    return { recoveryPoints: points, source: 'replica-store' };
  }
  return { recoveryPoints: await vault.store.recoveryPoints.list(machine.id), source: 'vault' };
}

/** A point named by id must be one of this machine's (a 400 at the request, not a failed job later). */
async function checkChosenPoint(vault: VaultContext, machine: Machine, options: object): Promise<void> {
  const choice = 'recoveryPoint' in options ? (options.recoveryPoint as RecoveryPointChoice) : undefined;
  if (choice?.option !== 'custom' || choice.pointId === undefined) return;
  const { recoveryPoints } = await recoveryPointsOf(vault, machine);
  if (recoveryPoints.some((p) => p.id === choice.pointId)) return;
  throw new HavenError(
    'bad_request',
    `recoveryPoint.pointId: machine '${machine.name}' has no recovery point '${choice.pointId.slice(0, 200)}' (${recoveryPoints.length} points; see GET /machines/${machine.id}/recovery-points)`,
    { field: 'recoveryPoint.pointId', machineId: machine.id, machineName: machine.name },
  );
}

/** A lifecycle operation's endpoint: its body schema gives the options the operation's job takes. */
export interface OperationRoute<O extends LifecycleOperation> {
  summary: string;
  body: z.ZodType<OperationOptions[O]>;
}

const OPERATIONS: { [O in LifecycleOperation]: OperationRoute<O> } = {
  'enable-replication': { summary: 'Enable replication (initial copy)', body: s.enableReplication },
  'disable-replication': { summary: 'Disable replication', body: s.empty },
  'test-failover': { summary: 'Start a test failover (DR drill)', body: s.testFailover },
  'cleanup-test-failover': { summary: 'Clean up a test failover', body: s.cleanupTestFailover },
  failover: { summary: 'Unplanned failover at a recovery point', body: s.failover },
  'planned-failover': { summary: 'Planned failover (no data loss)', body: s.plannedFailover },
  failback: { summary: 'Fail back to the primary site', body: s.failback },
  'complete-failover': { summary: 'Complete a synchronised failback', body: s.empty },
  'change-recovery-point': { summary: 'Restart from another recovery point', body: s.changeRecoveryPoint },
  commit: { summary: 'Commit the failover', body: s.empty },
  reprotect: { summary: 'Reprotect (reverse replication)', body: s.reprotect },
  resync: { summary: 'Resynchronise replication', body: s.resync },
};

function operationRoute<O extends LifecycleOperation>(
  vault: VaultContext,
  operation: O,
  { summary, body }: OperationRoute<O>,
): RouteDefinition {
  return route({
    method: 'post',
    path: `/machines/:id/${operation}`,
    summary,
    tag: 'machines',
    access: { kind: 'token', role: 'operator' },
    body,
    status: 202,
    response: r.job,
    handler: async ({ params, body: options, actor }) => {
      const machine = await machineOr404(vault, params.id!);
      const requested = withOptions(operation, options);
      const checkOperation = operationCheck(vault, requested);
      return requestOperation(vault, {
        ...requested,
        machineId: machine.id,
        actor: actor!.name,
        check: async (current) => {
          await checkOperation(current);
          await checkChosenPoint(vault, current, requested.options);
        },
      });
    },
  });
}

export function machineRoutes(vault: VaultContext): RouteDefinition[] {
  const { store } = vault;
  const tag = 'machines';
  return [
    route({
      method: 'get',
      path: '/machines',
      summary: 'List machines',
      tag,
      access: { kind: 'token', role: 'viewer' },
      query: s.listMachines,
      response: z.strictObject({ machines: z.array(r.machine) }),
      handler: async ({ query }) => {
        const machines = await store.machines.list({
          ...(query.state ? { state: query.state as MachineState } : {}),
          ...(query.hostId ? { hostId: query.hostId } : {}),
          ...(query.limit ? { limit: query.limit } : {}),
          ...(query.offset ? { offset: query.offset } : {}),
        });
        return { machines: machines.map(presentMachine) };
      },
    }),
    route({
      method: 'post',
      path: '/machines',
      summary: 'Register a machine on a host (unprotected)',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.createMachine,
      status: 201,
      response: r.machine,
      handler: async ({ body }) => {
        const host = (await store.hosts.get(body.hostId)) ?? (await store.hosts.getByName(body.hostId));
        if (!host)
          throw new HavenError('bad_request', `hostId: host '${body.hostId}' does not exist`, {
            field: 'hostId',
          });
        // A disk without a source: a sparse image in the host's storage folder, made when it is started.
        const disks = body.disks.map((disk, i) => {
          if (disk.source !== undefined) return { ...disk, source: disk.source };
          const folder = host.storageFolders[0];
          if (folder === undefined) {
            throw new HavenError(
              'bad_request',
              `disks.${i}.source: host '${host.name}' reports no storage folder; give the image path`,
              { field: `disks.${i}.source` },
            );
          }
          return { ...disk, source: join(folder, `${body.name}-${disk.id}.img`) };
        });
        // What an operator types must not make the host agent open or create files anywhere else.
        disks.forEach((disk, i) => {
          checkSourcePath(`disks.${i}.source`, disk.source, host.storageFolders);
        });
        // The hypervisor reads the kernel and initrd into the guest: the same folders, or any host file could be read.
        checkBootPaths('recoverySettings.boot', body.recoverySettings?.boot, host.storageFolders);
        if (await store.machines.getByName(body.name)) {
          throw new HavenError('conflict', `A machine named '${body.name}' already exists`, {
            field: 'name',
          });
        }
        const now = isoNow(vault.clock);
        const machine = newMachine(
          {
            name: body.name,
            osFamily: body.osFamily,
            disks,
            recoverySettings: body.recoverySettings ?? {
              targetName: body.name,
              cpus: 1,
              memoryMiB: 512,
              nics: [],
            },
          },
          host.id,
          now,
        );
        checkRunnable(machine, { nicsAndBootOnly: true });
        await store.machines.create(machine);
        return presentMachine(machine);
      },
    }),
    route({
      method: 'post',
      path: '/machines/import',
      summary:
        'Import a libvirt domain of a host as a machine (unprotected): disks and recovery settings from the domain',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.importMachine,
      status: 201,
      response: r.machine,
      handler: async ({ body }) =>
        presentMachine(await importDomain(vault, stripUndefined(body) as ImportDomainRequest)),
    }),
    route({
      method: 'get',
      path: '/machines/:id',
      summary: 'Show a machine (by id or name)',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: r.machine,
      handler: async ({ params }) => presentMachine(await machineOr404(vault, params.id!)),
    }),
    route({
      method: 'patch',
      path: '/machines/:id/recovery-settings',
      summary: 'Edit recovery settings',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.updateRecoverySettings,
      response: r.machine,
      handler: async ({ params, body }) => {
        const machine = await machineOr404(vault, params.id!);
        // Against the primary host's folders; a failover's recovery host checks them again at define.
        const primary = await store.hosts.get(machine.primaryHostId);
        checkBootPaths('recoverySettings.boot', body.boot, primary?.storageFolders ?? []);
        const updated: Machine = {
          ...machine,
          recoverySettings: { ...machine.recoverySettings, ...stripUndefined(body) },
          updatedAt: isoNow(vault.clock),
        };
        await store.machines.update(updated);
        return presentMachine(updated);
      },
    }),
    route({
      method: 'delete',
      path: '/machines/:id',
      summary: 'Delete an unprotected, stopped machine (its disk images stay)',
      tag,
      access: { kind: 'token', role: 'admin' },
      status: 204,
      response: r.noContent,
      handler: async ({ params }) => {
        const machine = await machineOr404(vault, params.id!);
        if (machine.state !== 'unprotected') {
          throw new HavenError(
            'operation_not_allowed',
            `Machine '${machine.name}' is ${machine.state}: only unprotected machines can be deleted; disable replication first`,
            {
              machineId: machine.id,
              machineName: machine.name,
              state: machine.state,
              allowedOperations: allowedOperations(machine.state),
            },
          );
        }
        await removeFromHost(vault, machine);
        await store.machines.delete(machine.id);
        return null;
      },
    }),
    route({
      method: 'post',
      path: '/machines/:id/start',
      summary: 'Start the machine on its host, its disks through the disk service',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.startMachine,
      response: r.machineStatus,
      handler: async ({ params }) => {
        const machine = await machineOr404(vault, params.id!);
        checkPowerAllowed(machine, 'start');
        checkRunnable(machine);
        return startMachine(vault, machine);
      },
    }),
    route({
      method: 'post',
      path: '/machines/:id/stop',
      summary: 'Stop the machine: ACPI shutdown, then fail or (forceOffAfterSeconds) power off',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.stopMachine,
      response: r.shutdownResult,
      handler: async ({ params, body }) => {
        const machine = await machineOr404(vault, params.id!);
        checkPowerAllowed(machine, 'stop');
        return stopMachine(vault, machine, {
          timeoutSeconds: body.forceOffAfterSeconds ?? body.timeoutSeconds,
          forceOff: body.forceOffAfterSeconds !== undefined,
        });
      },
    }),
    ...(['pause', 'resume'] as const).map((verb) =>
      route({
        method: 'post',
        path: `/machines/:id/${verb}-protection`,
        summary:
          verb === 'pause'
            ? 'Pause live protection of an imported domain (its mirror ends; the replica and its points stay): for a live migration, a snapshot, another block job'
            : 'Resume live protection of an imported domain: the mirror is armed again, only changed blocks sent',
        tag,
        access: { kind: 'token', role: 'operator' },
        body: s.startMachine,
        response: r.mirrorStatus,
        handler: async ({ params }) =>
          setProtectionPaused(vault, await machineOr404(vault, params.id!), verb === 'pause'),
      }),
    ),
    route({
      method: 'get',
      path: '/machines/:id/console',
      summary:
        'Serial console of the machine on its host (viewers may read: output only); follow=1 streams new lines as server-sent events',
      tag,
      access: { kind: 'token', role: 'viewer' },
      query: s.machineConsole,
      response: s.withExample(z.strictObject({ name: z.string(), lines: z.array(z.string()) }), {
        name: 'web-01',
        lines: ['Welcome to web-01', 'web-01 login:'],
      }),
      alsoAnswers: {
        mediaType: 'text/event-stream',
        description:
          'With follow=1: `line` events (one console line each) as the machine writes them, then `end`',
      },
      handler: async ({ params, query, context }) => {
        const machine = await machineOr404(vault, params.id!);
        const which = query.copy ?? 'running';
        if (!query.follow) return consoleOf(vault, machine, query.tail, which);
        // The first read answers 404/503 as JSON before the stream starts.
        const first = await consoleOf(vault, machine, undefined, which);
        return streamSSE(context, async (stream) => {
          await followConsole(
            vault,
            machine,
            first.lines,
            query.tail ?? 50,
            {
              send: (line) => stream.writeSSE({ event: 'line', data: line }),
              stopped: () => stream.aborted,
              onAbort: (wake) => stream.onAbort(wake),
            },
            which,
          );
          await stream.writeSSE({ event: 'end', data: '' });
        });
      },
    }),
    route({
      method: 'get',
      path: '/machines/:id/replication-history',
      summary:
        'Replication throughput, bytes pending and RPO over time: 10 s samples for the last hour, 1 min for a day, 10 min for 30 days',
      tag,
      access: { kind: 'token', role: 'viewer' },
      query: s.replicationHistory,
      response: r.replicationHistory,
      handler: async ({ params, query }) => {
        const machine = await machineOr404(vault, params.id!);
        const now = isoNow(vault.clock);
        const since = query.since ?? new Date(Date.parse(now) - 3600_000).toISOString();
        const { resolutionSeconds } = tierFor(since, now, query.resolution);
        const samples = await vault.store.replicationHistory.list(machine.id, resolutionSeconds, since);
        return { machineId: machine.id, since, resolutionSeconds, samples };
      },
    }),
    route({
      method: 'get',
      path: '/machines/:id/recovery-points',
      summary: 'List recovery points',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: z.strictObject({
        recoveryPoints: z.array(r.recoveryPoint),
        source: z.enum(['replica-store', 'vault']),
      }),
      handler: async ({ params }) => {
        return recoveryPointsOf(vault, await machineOr404(vault, params.id!));
      },
    }),
    route({
      method: 'get',
      path: '/machines/:id/validation',
      summary: 'Pre-failover validation of the recovery settings: every problem, not the first',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: z.strictObject({ valid: z.boolean(), problems: z.array(r.problem) }),
      handler: async ({ params }) => {
        const machine = await machineOr404(vault, params.id!);
        const problems = await recoveryProblems(vault, machine);
        return { valid: problems.length === 0, problems };
      },
    }),
    ...ALL_OPERATIONS.map((operation) => operationRoute(vault, operation, OPERATIONS[operation])),
  ];
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
