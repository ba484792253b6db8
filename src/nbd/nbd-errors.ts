import { type ErrorCode, HavenError } from '../errors/index.ts';
import { NbdErrno } from './constants.ts';

const nameOf = new Map<number, string>(Object.entries(NbdErrno).map(([name, value]) => [value, name]));

export function nbdErrnoName(errno: number): string {
  return nameOf.get(errno) ?? `errno ${errno}`;
}

const havenCodeOf: Record<number, ErrorCode> = {
  [NbdErrno.EPERM]: 'forbidden',
  [NbdErrno.EINVAL]: 'bad_request',
  [NbdErrno.ENOSPC]: 'bad_request',
  [NbdErrno.EOVERFLOW]: 'bad_request',
  [NbdErrno.ENOTSUP]: 'not_available',
  [NbdErrno.ESHUTDOWN]: 'unreachable',
};

/** What a client sees when the server answers a request with an error. */
export function nbdRequestError(command: string, errno: number, message: string): HavenError {
  const name = nbdErrnoName(errno);
  const text = message ? `: ${message}` : '';
  return new HavenError(havenCodeOf[errno] ?? 'internal', `NBD ${command} failed with ${name}${text}`, {
    command,
    nbdError: name,
    errno,
  });
}

/**
 * Maps what a backend threw onto the protocol's small set of errors, so a
 * backend can throw HavenError or let node:fs errors through.
 */
export function toNbdErrno(err: unknown): number {
  if (err instanceof HavenError) {
    const explicit = err.details.errno;
    if (typeof explicit === 'number' && nameOf.has(explicit)) return explicit;
    switch (err.code) {
      case 'forbidden':
      case 'operation_not_allowed':
        return NbdErrno.EPERM;
      case 'bad_request':
      case 'validation_failed':
        return NbdErrno.EINVAL;
      case 'limit_exceeded':
        return NbdErrno.ENOSPC;
      case 'not_available':
        return NbdErrno.ENOTSUP;
      case 'unreachable':
        return NbdErrno.ESHUTDOWN;
      default:
        return NbdErrno.EIO;
    }
  }
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'EPERM':
    case 'EACCES':
    case 'EROFS':
      return NbdErrno.EPERM;
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return NbdErrno.ENOSPC;
    case 'EINVAL':
      return NbdErrno.EINVAL;
    case 'ENOMEM':
      return NbdErrno.ENOMEM;
    default:
      return NbdErrno.EIO;
  }
}
