import { z } from 'zod';
import type { RouteDefinition } from './route.ts';
import { exampleOf } from './schema-example.ts';

const errorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message', 'details'],
      properties: {
        code: { type: 'string', description: 'Stable error code, e.g. operation_not_allowed' },
        message: { type: 'string' },
        details: { type: 'object', additionalProperties: true },
      },
    },
  },
};

/**
 * A zod schema as JSON Schema. Objects with an id (`.meta({ id })`) go to
 * `components` once and are referenced from every operation that uses them.
 */
function toJsonSchema(
  schema: z.ZodType,
  io: 'input' | 'output',
  components: Record<string, unknown>,
): Record<string, unknown> {
  const {
    $schema: _ignored,
    $defs,
    ...rest
  } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown> & {
    $defs?: Record<string, unknown>;
  };
  for (const [id, def] of Object.entries($defs ?? {})) components[id] ??= toComponentRefs(def);
  return toComponentRefs(rest) as Record<string, unknown>;
}

function toComponentRefs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(toComponentRefs);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, v]) => [
      key,
      key === '$ref' && typeof v === 'string'
        ? v.replace('#/$defs/', '#/components/schemas/')
        : toComponentRefs(v),
    ]),
  );
}

/** What a successful answer carries: the declared schema as JSON, and any other media type the route may answer. */
function successResponse(r: RouteDefinition, components: Record<string, unknown>): Record<string, unknown> {
  if (r.status === 204) return { description: 'Done; no body' };
  const content: Record<string, unknown> = {};
  if (!(r.response instanceof z.ZodNever)) {
    const schema = toJsonSchema(r.response, 'output', components);
    content['application/json'] = { schema, example: exampleOf(schema, components) };
  }
  if (r.alsoAnswers) content[r.alsoAnswers.mediaType] = { schema: { type: 'string' } };
  return { description: r.alsoAnswers ? `Success. ${r.alsoAnswers.description}` : 'Success', content };
}

/** Builds the OpenAPI 3.1 document from the same route declarations the router uses. */
export function buildOpenApi(routes: RouteDefinition[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const components: Record<string, unknown> = { Error: errorSchema };
  for (const r of routes) {
    const path = `/api/v1${r.path.replace(/:([A-Za-z]+)/g, '{$1}')}`;
    const parameters: unknown[] = [...r.path.matchAll(/:([A-Za-z]+)/g)].map((m) => ({
      name: m[1],
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    if (r.query) {
      const query = toJsonSchema(r.query, 'input', components);
      const properties = (query.properties ?? {}) as Record<string, unknown>;
      const required = new Set((query.required as string[] | undefined) ?? []);
      for (const [name, schema] of Object.entries(properties)) {
        parameters.push({ name, in: 'query', required: required.has(name), schema });
      }
    }
    const responses: Record<string, unknown> = {
      [String(r.status ?? 200)]: successResponse(r, components),
      '400': {
        description: 'Bad input; names the field',
        content: { 'application/json': { schema: errorSchema } },
      },
    };
    if (r.access.kind !== 'public') {
      responses['401'] = { description: 'Missing or unknown bearer token' };
      responses['403'] = { description: 'The token’s role does not allow this' };
    }
    if (r.path.includes(':')) responses['404'] = { description: 'Not found' };
    if (r.method !== 'get') {
      responses['409'] = {
        description: 'Refused in the current state; names the state and the allowed operations',
        content: { 'application/json': { schema: errorSchema } },
      };
    }
    const operation: Record<string, unknown> = {
      summary: r.summary,
      tags: [r.tag],
      parameters,
      responses,
      security: r.access.kind === 'public' ? [] : [{ bearer: [] }],
    };
    if (r.access.kind === 'token') operation['x-haven-role'] = r.access.role;
    if (r.body) {
      const schema = toJsonSchema(r.body, 'input', components);
      operation.requestBody = {
        required: true,
        // What must be sent; the schema lists the optional fields.
        content: {
          'application/json': { schema, example: exampleOf(schema, components, { requiredOnly: true }) },
        },
      };
    }
    paths[path] ??= {};
    paths[path][r.method] = operation;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Haven vault API',
      version,
      description:
        'Site recovery for QEMU/KVM machines. Every endpoint except GET /api/v1/health (and this document) needs a bearer token; ' +
        'roles: viewer (read), operator (run operations), admin (everything). Errors share one JSON shape.',
    },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: components,
    },
    paths,
  };
}
