import { HavenError } from '../errors/index.ts';
import { redeemServerEnrolment } from './servers/index.ts';
import type { VaultContext } from './vault-context.ts';

/** What a host may ask of the vault over the control channel; every other method is refused. */
const HOST_REQUESTS: Record<
  string,
  (vault: VaultContext, hostId: string, params: unknown) => Promise<unknown>
> = {
  'servers.redeemEnrolment': redeemServerEnrolment,
};

/** Answers a host's request (ControlServer's `handleRequest`). */
export function answerHostRequest(
  vault: VaultContext,
  hostId: string,
  method: string,
  params: unknown,
): Promise<unknown> {
  const answer = Object.hasOwn(HOST_REQUESTS, method) ? HOST_REQUESTS[method] : undefined;
  if (!answer) {
    return Promise.reject(
      new HavenError(
        'not_available',
        `the vault does not answer '${method}' (hosts may ask only: ${Object.keys(HOST_REQUESTS).join(', ')})`,
        { method },
      ),
    );
  }
  return answer(vault, hostId, params);
}
