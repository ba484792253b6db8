import assert from 'node:assert/strict';
import type { Embedded } from '../app/start-embedded.ts';
import { isTerminalJobState } from '../domain/job-states.ts';
import type { Job } from '../domain/model.ts';
import { until } from './until.ts';

export interface ApiAnswer<T> {
  status: number;
  body: T;
}

/** Calls an embedded vault's REST API in process (Hono's app.request) with its admin token. */
export function embeddedApi(up: () => Embedded) {
  return async <T>(method: string, path: string, body?: unknown): Promise<ApiAnswer<T>> => {
    const response = await up().vault.app.request(`/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${up().adminToken}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json().catch(() => null)) as T };
  };
}

/**
 * Answers some of the vault's calls to its hosts in the test: `answer`
 * returns what the host would (a promise is fine), or undefined to let the
 * real host answer.
 */
export function answerHostCalls(up: Embedded, answer: (method: string) => unknown): void {
  const gateway = up.vault.context.hosts;
  const call = gateway.call.bind(gateway);
  gateway.call = (async (
    hostId: string,
    method: string,
    params?: unknown,
    options?: { timeoutMs?: number },
  ) => {
    const answered = answer(method);
    return answered === undefined ? call(hostId, method, params, options) : answered;
  }) as typeof gateway.call;
}

/** The CLI's options to reach an embedded vault as its admin (URL, token, certificate fingerprint). */
export function embeddedCliConnection(up: Embedded): string[] {
  return [
    '--url',
    up.vault.url,
    '--token',
    up.adminToken,
    ...(up.vault.apiFingerprint ? ['--fingerprint', up.vault.apiFingerprint] : []),
  ];
}

/**
 * Starts `operation` on a machine through the API and waits (up to
 * `timeoutMs`) for its job, which must succeed; a failure shows the job's
 * error and steps.
 */
export async function runOperation(
  api: ReturnType<typeof embeddedApi>,
  machineId: string,
  operation: string,
  body: unknown,
  timeoutMs: number,
): Promise<Job> {
  const started = await api<Job>('POST', `/machines/${machineId}/${operation}`, body);
  assert.equal(started.status, 202, `${operation}: ${JSON.stringify(started.body)}`);
  const job = await until(
    `${operation} to finish`,
    async () => {
      const { body: j } = await api<Job>('GET', `/jobs/${started.body.id}`);
      return isTerminalJobState(j.state) ? j : undefined;
    },
    { timeoutMs },
  );
  assert.equal(
    job.state,
    'succeeded',
    `${operation}: ${JSON.stringify(job.error)} ${JSON.stringify(job.steps)}`,
  );
  return job;
}
