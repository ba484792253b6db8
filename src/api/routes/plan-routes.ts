import { randomUUID } from 'node:crypto';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { z } from 'zod';
import { isoNow } from '../../clock/index.ts';
import type { RecoveryPlan } from '../../domain/model.ts';
import { assertValidPlan, type PlanDocument, planToDocument } from '../../domain/recovery-plan-validation.ts';
import { HavenError, notFound } from '../../errors/index.ts';
import { type OperationWithOptions, withOptions } from '../../vault/lifecycle/operation-options.ts';
import {
  activePlanJobs,
  busyMachines,
  PLAN_OPERATIONS,
  type PlanOperation,
  planOperationAvailability,
  planRtoEstimate,
  requestPlanOperation,
} from '../../vault/plans/index.ts';
import type { VaultContext } from '../../vault/vault-context.ts';
import * as r from '../response-schemas.ts';
import { parseInput, type RouteDefinition, route } from '../route.ts';
import * as s from '../schemas.ts';
import type { OperationRoute } from './machine-routes.ts';

const OPERATION_BODIES: { [O in PlanOperation]: OperationRoute<O> } = {
  'test-failover': {
    summary: 'Test failover of every machine of the plan, group by group',
    body: s.testFailover,
  },
  'cleanup-test-failover': { summary: "Clean up the plan's test failover", body: s.cleanupTestFailover },
  failover: {
    summary: 'Unplanned failover of the plan (one recovery point choice for all)',
    body: s.failover,
  },
  'planned-failover': { summary: 'Planned failover of the plan (no data loss)', body: s.plannedFailover },
  commit: { summary: "Commit the plan's failover", body: s.empty },
  reprotect: { summary: "Reprotect the plan's machines (reverse replication)", body: s.reprotect },
  failback: { summary: 'Fail the plan back to the primary site', body: s.failback },
  'complete-failover': {
    summary:
      "Complete the plan's synchronised failback: start its machines at the primary site, group by group",
    body: s.empty,
  },
};

/** A recovery plan by id or name, or a 404 naming what was asked for. */
export async function planByRefOr404(vault: VaultContext, ref: string): Promise<RecoveryPlan> {
  const plan = (await vault.store.plans.get(ref)) ?? (await vault.store.plans.getByName(ref));
  if (!plan) throw notFound('recovery plan', ref);
  return plan;
}

export function planRoutes(vault: VaultContext): RouteDefinition[] {
  const { store } = vault;
  const tag = 'plans';

  const planOr404 = (id: string) => planByRefOr404(vault, id);
  const machineNames = async () => new Map((await store.machines.list()).map((m) => [m.id, m.name]));
  const toDocument = async (plan: RecoveryPlan) => {
    const names = await machineNames();
    return planToDocument(plan, (id) => names.get(id) ?? id);
  };
  const operationRoute = <O extends PlanOperation>(operation: O, { summary, body }: OperationRoute<O>) =>
    route({
      method: 'post',
      path: `/plans/:id/${operation}`,
      summary,
      tag,
      access: { kind: 'token', role: 'operator' },
      body,
      status: 202,
      response: r.job,
      handler: async ({ params, body: options, actor }) => {
        const requested: OperationWithOptions<PlanOperation> = withOptions(operation, options);
        return requestPlanOperation(vault, {
          plan: await planOr404(params.id!),
          actor: actor!.name,
          ...requested,
        });
      },
    });
  /** Resolves and checks a document; machines moved by another plan's running job are refused. */
  const validate = async (doc: PlanDocument, planId: string | null) => {
    const active = (await activePlanJobs(vault)).filter((job) => job.targetId !== planId);
    const machines = (await store.machines.list()).map((m) => ({ id: m.id, name: m.name }));
    const scripts = await vault.scripts.registry.known();
    return assertValidPlan(doc, { machines, scripts, busy: busyMachines(active) });
  };
  const refuseWhileRunning = async (plan: RecoveryPlan, what: string) => {
    const job = (await activePlanJobs(vault)).find((j) => j.targetId === plan.id);
    if (job)
      throw new HavenError(
        'conflict',
        `Plan '${plan.name}' cannot be ${what} while its job ${job.id} is ${job.state}`,
        { planId: plan.id, jobId: job.id },
      );
  };
  const present = async (plan: RecoveryPlan) => {
    const all = await store.machines.list();
    const names = new Map(all.map((m) => [m.id, m.name]));
    const members = new Set(plan.groups.flatMap((g) => g.machineIds));
    const rto = await planRtoEstimate(vault, plan);
    const job = (await activePlanJobs(vault)).find((j) => j.targetId === plan.id);
    return {
      ...plan,
      groups: plan.groups.map((g) => ({ ...g, machineNames: g.machineIds.map((id) => names.get(id) ?? id) })),
      rtoEstimateSeconds: rto.seconds,
      rtoEstimate: rto,
      activeJobId: job?.id ?? null,
      operations: planOperationAvailability(all.filter((m) => members.has(m.id))),
    };
  };
  const save = async (doc: PlanDocument, existing: RecoveryPlan | null): Promise<RecoveryPlan> => {
    const valid = await validate(doc, existing?.id ?? null);
    const other = await store.plans.getByName(valid.name);
    if (other && other.id !== existing?.id)
      throw new HavenError('conflict', `A recovery plan named '${valid.name}' already exists`, {
        field: 'name',
      });
    const now = isoNow(vault.clock);
    const plan: RecoveryPlan = {
      id: existing?.id ?? randomUUID(),
      ...valid,
      createdAt: existing?.createdAt ?? now,
      updatedAt: now,
    };
    if (existing) await store.plans.update(plan);
    else await store.plans.create(plan);
    return plan;
  };

  return [
    route({
      method: 'get',
      path: '/plans',
      summary: 'List recovery plans',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: z.strictObject({ plans: z.array(r.recoveryPlan) }),
      handler: async () => ({ plans: await store.plans.list() }),
    }),
    route({
      method: 'post',
      path: '/plans',
      summary: 'Create a recovery plan (machines by name or id; groups and actions run in the order written)',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.planDocument,
      status: 201,
      response: r.presentedPlan,
      handler: async ({ body }) => present(await save(body, null)),
    }),
    route({
      method: 'post',
      path: '/plans/import',
      summary: 'Import a recovery plan exported as JSON or YAML',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.planImport,
      // The document travels as a JSON string: up to 1 MB of text, escaped.
      maxBodyBytes: 8 << 20,
      status: 201,
      response: r.presentedPlan,
      handler: async ({ body }) => {
        let parsed: unknown;
        try {
          parsed = body.format === 'yaml' ? parseYaml(body.content) : JSON.parse(body.content);
        } catch (error) {
          throw new HavenError(
            'bad_request',
            `content: not valid ${body.format.toUpperCase()}: ${error instanceof Error ? error.message : error}`,
            { field: 'content' },
          );
        }
        const doc = parseInput(s.planDocument, parsed, 'body');
        const existing = (await store.plans.getByName(doc.name.trim())) ?? null;
        if (existing && !body.replace)
          throw new HavenError(
            'conflict',
            `A recovery plan named '${existing.name}' already exists; import with replace to overwrite it`,
            { field: 'name', planId: existing.id },
          );
        if (existing) await refuseWhileRunning(existing, 'replaced');
        return present(await save(doc, existing));
      },
    }),
    route({
      method: 'get',
      path: '/plans/:id',
      summary: 'Show a recovery plan (by id or name) with its RTO estimate',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: r.presentedPlan,
      handler: async ({ params }) => present(await planOr404(params.id!)),
    }),
    route({
      method: 'put',
      path: '/plans/:id',
      summary: 'Replace a recovery plan',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.planDocument,
      response: r.presentedPlan,
      handler: async ({ params, body }) => {
        const plan = await planOr404(params.id!);
        await refuseWhileRunning(plan, 'changed');
        return present(await save(body, plan));
      },
    }),
    route({
      method: 'delete',
      path: '/plans/:id',
      summary: 'Delete a recovery plan (its machines are not touched)',
      tag,
      access: { kind: 'token', role: 'operator' },
      status: 204,
      response: r.noContent,
      handler: async ({ params }) => {
        const plan = await planOr404(params.id!);
        await refuseWhileRunning(plan, 'deleted');
        await store.plans.delete(plan.id);
        return null;
      },
    }),
    route({
      method: 'get',
      path: '/plans/:id/export',
      summary: 'Export a recovery plan as JSON or YAML (machines by name), for version control',
      tag,
      access: { kind: 'token', role: 'viewer' },
      query: s.planExport,
      response: r.planDocument,
      alsoAnswers: { mediaType: 'application/yaml', description: 'The same document as YAML (format=yaml)' },
      handler: async ({ params, query }) => {
        const doc = await toDocument(await planOr404(params.id!));
        return query.format === 'yaml'
          ? new Response(toYaml(doc), { headers: { 'content-type': 'application/yaml; charset=utf-8' } })
          : doc;
      },
    }),
    ...PLAN_OPERATIONS.map((operation) => operationRoute(operation, OPERATION_BODIES[operation])),
    route({
      method: 'post',
      path: '/jobs/:id/resume',
      summary: "Resume a job waiting at a plan's manual action",
      tag: 'jobs',
      access: { kind: 'token', role: 'operator' },
      status: 202,
      response: r.job,
      handler: async ({ params, actor }) => vault.engine.resume(params.id!, actor!.name),
    }),
  ];
}
