import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import { isTerminalJobState } from '../../domain/index.ts';
import type { Job } from '../../domain/model.ts';
import { notFound } from '../../errors/index.ts';
import type { VaultContext } from '../../vault/vault-context.ts';
import * as r from '../response-schemas.ts';
import { type RouteDefinition, route } from '../route.ts';
import * as s from '../schemas.ts';

export function jobRoutes(vault: VaultContext): RouteDefinition[] {
  const { store, engine } = vault;
  const tag = 'jobs';
  const present = (job: Job) => ({ ...job, cancel: engine.cancellable(job) });
  const jobOr404 = async (id: string) => {
    const job = await store.jobs.get(id);
    if (!job) throw notFound('job', id);
    return job;
  };
  return [
    route({
      method: 'get',
      path: '/jobs',
      summary: 'List jobs, newest first',
      tag,
      access: { kind: 'token', role: 'viewer' },
      query: s.listJobs,
      response: z.strictObject({ jobs: z.array(r.presentedJob) }),
      handler: async ({ query }) => ({ jobs: (await store.jobs.list(query)).map(present) }),
    }),
    route({
      method: 'get',
      path: '/jobs/:id',
      summary: 'Show a job with its steps',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: r.presentedJob,
      handler: async ({ params }) => present(await jobOr404(params.id!)),
    }),
    route({
      method: 'post',
      path: '/jobs/:id/cancel',
      summary: 'Cancel a job (refused past its point of no return)',
      tag,
      access: { kind: 'token', role: 'operator' },
      status: 202,
      response: r.presentedJob,
      handler: async ({ params }) => present(await engine.cancel(params.id!)),
    }),
    route({
      method: 'get',
      path: '/jobs/:id/events',
      summary: 'Server-sent events: the job each time it changes, until it ends',
      tag,
      access: { kind: 'token', role: 'viewer' },
      response: z.never(),
      alsoAnswers: {
        mediaType: 'text/event-stream',
        description: '`job` events, each the job as GET /jobs/{id} shows it, until it ends',
      },
      handler: async ({ params, context }) => {
        const first = await jobOr404(params.id!);
        return streamSSE(context, async (stream) => {
          let last = '';
          let wake: (() => void) | null = null;
          const onChange = (id: string) => {
            if (id === first.id) wake?.();
          };
          engine.on('change', onChange);
          stream.onAbort(() => wake?.());
          try {
            while (!stream.aborted) {
              const job = await store.jobs.get(first.id);
              if (!job) break;
              const text = JSON.stringify(present(job));
              if (text !== last) {
                last = text;
                await stream.writeSSE({ event: 'job', data: text, id: String(Date.now()) });
              }
              if (isTerminalJobState(job.state)) break;
              // Another vault process may run the job: poll as well as listen.
              await new Promise<void>((resolve) => {
                wake = resolve;
                setTimeout(resolve, 1000);
              });
              wake = null;
            }
          } finally {
            engine.off('change', onChange);
          }
        });
      },
    }),
  ];
}
