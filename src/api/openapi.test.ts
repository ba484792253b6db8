import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { type RunningVault, startVault } from '../app/start-vault.ts';
import type { Job } from '../domain/model.ts';
import { until } from '../testing/until.ts';

/**
 * The served OpenAPI document against the real vault: public, complete (a
 * response schema for every operation), and true (real answers validate
 * against the schema the document gives for them).
 */

interface MediaType {
  schema: Record<string, unknown>;
  example?: unknown;
}
interface Operation {
  requestBody?: { content: { 'application/json': MediaType } };
  responses: Record<string, { content?: Record<string, MediaType> }>;
  security: unknown[];
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown> };
}

let vault: RunningVault;
let dataDir: string;
let admin: string;
let document: Document;

async function call(method: string, path: string, body?: unknown, token: string | null = admin) {
  const response = await vault.app.request(`/api/v1${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : null };
}

/** The document's operation for a concrete request path (`/machines/abc` matches `/machines/{id}`). */
function operationOf(method: string, path: string): { template: string; operation: Operation } {
  const segments = `/api/v1${path.split('?')[0]}`.split('/');
  for (const [template, methods] of Object.entries(document.paths)) {
    const parts = template.split('/');
    if (parts.length !== segments.length) continue;
    if (!parts.every((p, i) => p === segments[i] || /^\{\w+\}$/.test(p))) continue;
    const operation = methods[method.toLowerCase()];
    if (operation) return { template, operation };
  }
  assert.fail(`no operation ${method} ${path} in openapi.json`);
}

/** The response schema the document gives, as a standalone JSON Schema (its components as $defs). */
function responseSchema(operation: Operation, status: number): z.ZodType {
  const schema = operation.responses[String(status)]?.content?.['application/json']?.schema;
  assert.ok(schema, `a response schema for ${status}`);
  return standalone(schema);
}

function standalone(schema: Record<string, unknown>): z.ZodType {
  const resolved = JSON.parse(
    JSON.stringify({ ...schema, $defs: document.components.schemas }).replaceAll(
      '#/components/schemas/',
      '#/$defs/',
    ),
  );
  return z.fromJSONSchema(resolved);
}

/** Calls the vault and checks the answer against the document: the declared status and its schema. */
async function answersAsDocumented(
  method: string,
  path: string,
  status: number,
  body?: unknown,
): Promise<Record<string, unknown> & { id: string }> {
  const answer = await call(method, path, body);
  assert.equal(answer.status, status, `${method} ${path}: ${JSON.stringify(answer.body)}`);
  const { template, operation } = operationOf(method, path);
  if (status === 204) {
    assert.equal(answer.body, null);
    return { id: '' };
  }
  const result = responseSchema(operation, status).safeParse(answer.body);
  assert.ok(
    result.success,
    `${method} ${template}: the answer does not match its schema: ${result.error?.message}\n${JSON.stringify(answer.body, null, 2)}`,
  );
  return answer.body as Record<string, unknown> & { id: string };
}

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'haven-openapi-'));
  vault = await startVault({ dataDir, port: 0 });
  admin = vault.adminToken!;
  const served = await call('GET', '/openapi.json', undefined, null);
  assert.equal(served.status, 200);
  document = served.body as unknown as Document;
});

after(async () => {
  await vault.stop();
  await rm(dataDir, { recursive: true, force: true });
});

describe('OpenAPI document', () => {
  it('is served without a token, while the API it describes still needs one', async () => {
    const served = await call('GET', '/openapi.json', undefined, null);
    assert.equal(served.status, 200);
    assert.equal(served.body?.openapi, '3.1.0');
    for (const [method, path] of [
      ['GET', '/machines'],
      ['GET', '/session'],
      ['POST', '/tokens'],
    ] as const) {
      const refused = await call(method, path, method === 'POST' ? {} : undefined, null);
      assert.equal(refused.status, 401, `${method} ${path}`);
      assert.equal(
        operationOf(method, path).operation.security.length,
        1,
        `${method} ${path} declares its token`,
      );
    }
  });

  it('gives every operation a success response with a schema (none for 204)', () => {
    const operations = Object.entries(document.paths).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, operation]) => ({
        name: `${method.toUpperCase()} ${path}`,
        operation,
      })),
    );
    assert.ok(operations.length >= 50, `${operations.length} operations`);
    for (const { name, operation } of operations) {
      const [status, success] = Object.entries(operation.responses).find(([s]) => s.startsWith('2'))!;
      if (status === '204') {
        assert.equal(success.content, undefined, name);
        continue;
      }
      const media = Object.entries(success.content ?? {});
      assert.ok(media.length > 0, `${name}: its ${status} answer has no content`);
      for (const [type, { schema }] of media) {
        assert.ok(Object.keys(schema).length > 0, `${name}: an empty schema for ${type}`);
      }
    }
    const machine = document.components.schemas.Machine as { properties: Record<string, unknown> };
    assert.ok(machine.properties.allowedOperations, 'a machine shows its allowed operations');
  });

  it('describes real answers: each validates against its schema in the document', async () => {
    await answersAsDocumented('GET', '/health', 200);
    await answersAsDocumented('GET', '/session', 200);
    await answersAsDocumented('POST', '/sites', 201, { name: 'dc1', role: 'primary', networkMapping: {} });
    await answersAsDocumented('POST', '/sites', 201, { name: 'dc2', role: 'recovery', networkMapping: {} });
    await answersAsDocumented('GET', '/sites', 200);
    const enrolment = await answersAsDocumented('POST', '/enrolment-tokens', 201, {
      siteId: 'dc1',
      hostName: 'kvm-a',
    });
    const enrolled = await vault.app.request('/api/v1/hosts/enrol', {
      method: 'POST',
      headers: { authorization: `Bearer ${enrolment.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'kvm-a', storageFolders: ['/images'] }),
    });
    assert.equal(enrolled.status, 201);
    const host = (await enrolled.json()) as { hostId: string };
    assert.ok(responseSchema(operationOf('POST', '/hosts/enrol').operation, 201).safeParse(host).success);
    await answersAsDocumented('GET', '/hosts', 200);
    await answersAsDocumented('GET', `/hosts/${host.hostId}`, 200);
    await answersAsDocumented('PATCH', `/hosts/${host.hostId}`, 200, { maxProtectedDisks: 8 });
    await answersAsDocumented('GET', '/policies', 200);
    const reader = await answersAsDocumented('POST', '/tokens', 201, { name: 'reader', role: 'viewer' });
    await answersAsDocumented('GET', '/tokens', 200);
    const machine = await answersAsDocumented('POST', '/machines', 201, {
      name: 'web-01',
      hostId: 'kvm-a',
      disks: [{ id: 'disk0', sizeBytes: 1 << 30, source: '/images/web-01.img' }],
      recoverySettings: { targetName: 'web-01', cpus: 2, memoryMiB: 1024, nics: [{ network: 'lan' }] },
    });
    await answersAsDocumented('GET', '/machines', 200);
    await answersAsDocumented('GET', `/machines/${machine.id}`, 200);
    await answersAsDocumented('PATCH', `/machines/${machine.id}/recovery-settings`, 200, { cpus: 4 });
    await answersAsDocumented('GET', `/machines/${machine.id}/validation`, 200);
    await answersAsDocumented('GET', `/machines/${machine.id}/recovery-points`, 200);
    const plan = await answersAsDocumented('POST', '/plans', 201, {
      name: 'web tier',
      groups: [
        { name: 'web', machines: ['web-01'], before: [{ kind: 'manual', name: 'check', text: 'Check DNS' }] },
      ],
    });
    await answersAsDocumented('GET', '/plans', 200);
    await answersAsDocumented('GET', `/plans/${plan.id}`, 200);
    await answersAsDocumented('GET', `/plans/${plan.id}/export`, 200);
    const backup = await answersAsDocumented('POST', '/vault/backup', 202, {});
    // Finished, its steps carry what each recorded.
    await until(
      'the backup job to succeed',
      async () => (await call('GET', `/jobs/${backup.id}`)).body?.state === 'succeeded',
    );
    const finished = (await answersAsDocumented('GET', `/jobs/${backup.id}`, 200)) as unknown as Job;
    assert.ok(finished.steps.every((step) => step.output && Object.keys(step.output).length > 0));
    // A job from before steps kept their output: its steps' output is null.
    const old = {
      ...finished,
      id: randomUUID(),
      steps: finished.steps.map((step) => ({ ...step, output: null })),
    };
    await vault.context.store.jobs.create(old);
    await answersAsDocumented('GET', `/jobs/${old.id}`, 200);
    await answersAsDocumented('GET', '/jobs', 200);
    await answersAsDocumented('GET', '/alerts', 200);
    await answersAsDocumented('GET', '/rpo', 200);
    await answersAsDocumented('GET', '/scripts', 200);
    await answersAsDocumented('GET', '/script-runs', 200);
    await answersAsDocumented('DELETE', `/plans/${plan.id}`, 204);
    await answersAsDocumented('DELETE', `/tokens/${reader.id}`, 204);
  });

  it('gives an example of every request and answer that its schema accepts (docs/api.md shows them)', () => {
    let examples = 0;
    for (const [path, methods] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(methods)) {
        const media = [
          ...(operation.requestBody
            ? [['request', operation.requestBody.content['application/json']] as const]
            : []),
          ...Object.entries(operation.responses).flatMap(([status, r]) =>
            r.content?.['application/json'] ? [[status, r.content['application/json']] as const] : [],
          ),
        ];
        for (const [what, { schema, example }] of media) {
          const name = `${method.toUpperCase()} ${path} ${what}`;
          if (what !== 'request' && !what.startsWith('2')) continue;
          assert.notEqual(example, undefined, `${name}: no example`);
          const result = standalone(schema).safeParse(example);
          assert.ok(result.success, `${name}: its example does not match: ${result.error?.message}`);
          examples++;
        }
      }
    }
    assert.ok(examples >= 70, `${examples} examples`);
  });

  it('refuses an answer its schema does not describe (the check is not vacuous)', () => {
    const schema = responseSchema(operationOf('GET', '/hosts').operation, 200);
    assert.equal(schema.safeParse({ hosts: [{ id: 'x' }] }).success, false);
    assert.equal(schema.safeParse({ hosts: [], extra: true }).success, false);
  });
});
