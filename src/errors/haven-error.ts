/**
 * The one error type Haven code throws on purpose. It carries a stable `code`
 * (clients switch on it), the HTTP status the API answers with, a message an
 * operator can act on, and structured `details` (machine, state, allowed
 * operations, field...). Everything else that escapes is a bug and maps to 500.
 */
export type ErrorCode =
  | 'bad_request'
  | 'validation_failed'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'operation_not_allowed'
  | 'cancel_refused'
  | 'limit_exceeded'
  | 'payload_too_large'
  | 'not_available'
  | 'unreachable'
  | 'internal';

const statusOf: Record<ErrorCode, number> = {
  bad_request: 400,
  validation_failed: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  operation_not_allowed: 409,
  cancel_refused: 409,
  limit_exceeded: 409,
  payload_too_large: 413,
  not_available: 501,
  unreachable: 503,
  internal: 500,
};

export class HavenError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'HavenError';
    this.code = code;
    this.status = statusOf[code];
    this.details = details;
  }

  toJSON(): { error: { code: ErrorCode; message: string; details: Record<string, unknown> } } {
    return { error: { code: this.code, message: this.message, details: this.details } };
  }
}

export function notFound(kind: string, id: string): HavenError {
  return new HavenError('not_found', `${kind} '${id}' does not exist`, { kind, id });
}
