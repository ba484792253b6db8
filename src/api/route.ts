import type { Context } from 'hono';
import type { z } from 'zod';
import type { Role } from '../domain/model.ts';
import { HavenError } from '../errors/index.ts';

/**
 * One REST endpoint, declared as data: the router registers it with Hono and
 * the OpenAPI document is generated from the same declarations, so the
 * document cannot drift from what the server checks.
 */
export type Access =
  | { kind: 'public' }
  /** A bearer API token whose role is at least `role`. */
  | { kind: 'token'; role: Role }
  /** A one-time host enrolment token (`haven host` enrolling). */
  | { kind: 'enrolment' };

export interface Actor {
  tokenId: string;
  name: string;
  role: Role;
}

export interface RouteRequest<B, Q> {
  body: B;
  query: Q;
  params: Record<string, string>;
  actor: Actor | null;
  /** The raw enrolment token for `enrolment` routes. */
  bearer: string | null;
  context: Context;
}

interface RouteDeclaration<B, Q, R> {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** Hono path syntax, e.g. '/machines/:id'. */
  path: string;
  summary: string;
  tag: string;
  access: Access;
  body?: z.ZodType<B>;
  query?: z.ZodType<Q>;
  /** Largest request body accepted, in bytes; default DEFAULT_BODY_LIMIT_BYTES. */
  maxBodyBytes?: number;
  /** Status of a successful answer. */
  status?: 200 | 201 | 202 | 204;
  /**
   * The body of a successful answer (z.null() for 204): the OpenAPI
   * document's response schema, and what the handler must return.
   */
  response: z.ZodType<R>;
}

export type RouteDefinition<B = unknown, Q = unknown, R = unknown> = RouteDeclaration<B, Q, R> &
  (
    | { alsoAnswers?: undefined; handler(request: RouteRequest<B, Q>): Promise<NoInfer<R>> }
    | {
        /** Another media type the route may answer with (server-sent events, YAML): its handler then returns the Response. */
        alsoAnswers: { mediaType: string; description: string };
        handler(request: RouteRequest<B, Q>): Promise<NoInfer<R> | Response>;
      }
  );

export function route<B = undefined, Q = Record<string, never>, R = unknown>(
  definition: RouteDefinition<B, Q, R>,
): RouteDefinition {
  return definition as unknown as RouteDefinition;
}

/** Request bodies are small JSON documents; routes that take more say so (maxBodyBytes). */
export const DEFAULT_BODY_LIMIT_BYTES = 1 << 20;

const roleRank: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export function roleAllows(actual: Role, required: Role): boolean {
  return roleRank[actual] >= roleRank[required];
}

/** Turns a schema failure into the API's 400, naming the first offending field and listing all. */
export function parseInput<T>(schema: z.ZodType<T>, value: unknown, where: 'body' | 'query'): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => ({
    field: issue.path.length > 0 ? issue.path.join('.') : where,
    message: issue.message,
  }));
  const first = problems[0]!;
  throw new HavenError('bad_request', `Invalid ${where}: ${first.field}: ${first.message}`, {
    field: first.field,
    problems,
  });
}
