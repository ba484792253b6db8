import { z } from 'zod';
import { isoNow } from '../../clock/index.ts';
import {
  type DrillRun,
  type DrillSchedule,
  type DrillTarget,
  withoutScriptOutput,
} from '../../domain/drill.ts';
import { HavenError, notFound } from '../../errors/index.ts';
import {
  allProofs,
  type DrillRequest,
  drillCheckProblems,
  drillReport,
  drillReportHtml,
  drillReportMarkdown,
  drillScheduleFrom,
  refuseProblems,
  requestMachineDrill,
  requestPlanDrill,
  targetProof,
} from '../../vault/drills/index.ts';
import type { VaultContext } from '../../vault/vault-context.ts';
import * as r from '../response-schemas.ts';
import { type Actor, type RouteDefinition, roleAllows, route } from '../route.ts';
import * as s from '../schemas.ts';
import { machineOr404 } from './machine-routes.ts';
import { planByRefOr404 } from './plan-routes.ts';

/** Script output (an application check's evidence) is for operators and admins; viewers see results without it. */
const seesScriptOutput = (actor: Actor | null) => actor !== null && roleAllows(actor.role, 'operator');

export function drillRoutes(vault: VaultContext): RouteDefinition[] {
  const { store } = vault;
  const tag = 'drills';

  const scheduleOr404 = async (ref: string) => {
    const schedule = (await store.drillSchedules.get(ref)) ?? (await store.drillSchedules.getByName(ref));
    if (!schedule) throw notFound('drill schedule', ref);
    return schedule;
  };
  const planOr404 = (ref: string) => planByRefOr404(vault, ref);
  /** Checks a drill's settings at the request, starts it, and answers with the drill and its job. */
  const startDrill = async (
    what: string,
    body: z.infer<typeof s.runDrill>,
    createdBy: string,
    request: (settings: DrillRequest) => Promise<DrillRun>,
  ) => {
    refuseProblems(what, await drillCheckProblems(vault, body.checks, body.timeLimitSeconds));
    const run = await request({
      point: body.point,
      testNetwork: body.testNetwork,
      checks: body.checks,
      timeLimitSeconds: body.timeLimitSeconds,
      createdBy,
    });
    const job = await store.jobs.get(run.jobId!);
    if (!job) throw new HavenError('internal', `drill ${run.id}: its job ${run.jobId} was not recorded`);
    return { drill: run, job };
  };
  const drillOr404 = async (id: string) => {
    const run = await store.drillRuns.get(id);
    if (!run) throw notFound('drill', id);
    return run;
  };
  const targetName = async (target: DrillTarget) =>
    target.kind === 'machine'
      ? ((await store.machines.get(target.machineId))?.name ?? null)
      : ((await store.plans.get(target.planId))?.name ?? null);
  const presentSchedule = async (schedule: DrillSchedule) => ({
    ...schedule,
    targetName: await targetName(schedule.target),
  });
  const presentRun = (run: DrillRun, actor: Actor | null) =>
    seesScriptOutput(actor) ? run : withoutScriptOutput(run);

  return [
    route({
      method: 'get',
      path: '/drill-schedules',
      summary: 'List drill schedules',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: z.strictObject({ schedules: z.array(r.presentedDrillSchedule) }),
      handler: async () => ({
        schedules: await Promise.all((await store.drillSchedules.list()).map(presentSchedule)),
      }),
    }),
    route({
      method: 'post',
      path: '/drill-schedules',
      summary:
        'Create a drill schedule for a machine or recovery plan (by name or id): how often, which point, the checks and limits',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.drillSchedule,
      status: 201,
      response: r.presentedDrillSchedule,
      handler: async ({ body, actor }) => {
        const schedule = await drillScheduleFrom(vault, body, null, actor!.name);
        await store.drillSchedules.create(schedule);
        return presentSchedule(schedule);
      },
    }),
    route({
      method: 'get',
      path: '/drill-schedules/:id',
      summary: 'Show a drill schedule (by id or name) and when it runs next',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: r.presentedDrillSchedule,
      handler: async ({ params }) => presentSchedule(await scheduleOr404(params.id!)),
    }),
    route({
      method: 'put',
      path: '/drill-schedules/:id',
      summary: 'Replace a drill schedule (also to enable or disable it); its next run is computed again',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.drillSchedule,
      response: r.presentedDrillSchedule,
      handler: async ({ params, body, actor }) => {
        const existing = await scheduleOr404(params.id!);
        const schedule = await drillScheduleFrom(vault, body, existing, actor!.name);
        await store.drillSchedules.update(schedule);
        return presentSchedule(schedule);
      },
    }),
    route({
      method: 'delete',
      path: '/drill-schedules/:id',
      summary: 'Delete a drill schedule (its drills and their reports are kept)',
      tag,
      access: { kind: 'token', role: 'operator' },
      status: 204,
      response: r.noContent,
      handler: async ({ params }) => {
        const schedule = await scheduleOr404(params.id!);
        await store.drillSchedules.delete(schedule.id);
        return null;
      },
    }),
    route({
      method: 'post',
      path: '/machines/:id/drills',
      summary:
        'Drill a protected machine now: boot a recovery point on the isolated test network, check it, clean up',
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.runDrill,
      status: 202,
      response: r.startedDrill,
      handler: async ({ params, body, actor }) => {
        const machine = await machineOr404(vault, params.id!);
        return startDrill(`A drill of machine '${machine.name}'`, body, actor!.name, (request) =>
          requestMachineDrill(vault, machine, request),
        );
      },
    }),
    route({
      method: 'post',
      path: '/plans/:id/drills',
      summary:
        "Drill a recovery plan now: its groups in order with their actions, every machine booted on the isolated test network and checked, the whole plan's RTO measured, everything cleaned up (manual actions are recorded as not performed)",
      tag,
      access: { kind: 'token', role: 'operator' },
      body: s.runDrill,
      status: 202,
      response: r.startedDrill,
      handler: async ({ params, body, actor }) => {
        const plan = await planOr404(params.id!);
        return startDrill(`A drill of plan '${plan.name}'`, body, actor!.name, (request) =>
          requestPlanDrill(vault, plan, request),
        );
      },
    }),
    route({
      method: 'get',
      path: '/drills',
      summary: 'List drills, newest first (by machine, plan, schedule or state)',
      tag,
      access: { kind: 'token', role: 'viewer' },
      query: s.listDrills,
      response: z.strictObject({ drills: z.array(r.drillRun) }),
      handler: async ({ query, actor }) => {
        const runs = await store.drillRuns.list({
          ...(query.machine ? { machineId: (await machineOr404(vault, query.machine)).id } : {}),
          ...(query.plan ? { target: { kind: 'plan', planId: (await planOr404(query.plan)).id } } : {}),
          ...(query.schedule ? { scheduleId: (await scheduleOr404(query.schedule)).id } : {}),
          ...(query.state ? { states: [query.state] } : {}),
          ...(query.limit ? { limit: query.limit } : {}),
        });
        return { drills: runs.map((run) => presentRun(run, actor)) };
      },
    }),
    route({
      method: 'get',
      path: '/drills/:id',
      summary: 'Show a drill: its point, checks with evidence, RTO and clean-up',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: r.drillRun,
      handler: async ({ params, actor }) => presentRun(await drillOr404(params.id!), actor),
    }),
    route({
      method: 'get',
      path: '/drills/:id/report',
      summary:
        "A drill's report for auditors, as JSON, Markdown or a standalone HTML page (script output for operators and admins only)",
      tag,
      access: { kind: 'token', role: 'viewer' },
      query: s.drillReportQuery,
      response: r.drillReport,
      alsoAnswers: {
        mediaType: 'text/markdown',
        description: 'The same report as Markdown (format=markdown), or text/html (format=html)',
      },
      handler: async ({ params, query, actor }) => {
        const run = await drillOr404(params.id!);
        const schedule = run.scheduleId ? await store.drillSchedules.get(run.scheduleId) : undefined;
        const report = drillReport(run, {
          scheduleName: schedule?.name ?? null,
          scriptOutput: seesScriptOutput(actor),
          generatedAt: isoNow(vault.clock),
        });
        if (query.format === 'json') return report;
        const file = `drill-${run.id.slice(0, 8)}.${query.format === 'html' ? 'html' : 'md'}`;
        return new Response(query.format === 'html' ? drillReportHtml(report) : drillReportMarkdown(report), {
          headers: {
            'content-type': `${query.format === 'html' ? 'text/html' : 'text/markdown'}; charset=utf-8`,
            'content-disposition': `attachment; filename="${file}"`,
            // The page shows what guests and scripts printed: it may not run anything.
            'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
          },
        });
      },
    }),
    route({
      method: 'get',
      path: '/machines/:id/proof',
      summary:
        "A machine's proof of recoverability: its last proven point (time, kind, RTO, checks) and newest drill",
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: r.targetProof,
      handler: async ({ params }) => {
        const machine = await machineOr404(vault, params.id!);
        return targetProof(vault, { kind: 'machine', machineId: machine.id });
      },
    }),
    route({
      method: 'get',
      path: '/proofs',
      summary:
        "Every drilled machine's and plan's proof in one answer (as GET /machines/:id/proof and GET /plans/:id/proof; one never drilled is left out), for lists and the dashboard",
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: z.strictObject({ proofs: z.array(r.targetProof) }),
      handler: async () => ({ proofs: await allProofs(vault) }),
    }),
    route({
      method: 'get',
      path: '/plans/:id/proof',
      summary:
        "A recovery plan's proof: its last passed drill (points, measured RTO, checks) and newest drill",
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: r.targetProof,
      handler: async ({ params }) => {
        const plan = await planOr404(params.id!);
        return targetProof(vault, { kind: 'plan', planId: plan.id });
      },
    }),
  ];
}
