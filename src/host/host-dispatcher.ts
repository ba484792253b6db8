/**
 * Both ends of the host RPC surface: the host turns "<service>.<operation>"
 * calls into calls on its HostServices; the vault turns HostServices calls
 * into control-channel calls. Only operations listed in HOST_OPERATIONS are
 * reachable, so a caller cannot reach any other property of a service.
 */
import { HavenError } from '../errors/index.ts';
import { HOST_OPERATIONS, type HostServiceName, type HostServices } from './host-services.ts';

export function createHostDispatcher(
  services: HostServices,
): (method: string, params: unknown) => Promise<unknown> {
  return async (method, params) => {
    const dot = method.indexOf('.');
    const service = method.slice(0, dot) as HostServiceName;
    const operation = method.slice(dot + 1);
    const operations: readonly string[] | undefined = Object.hasOwn(HOST_OPERATIONS, service)
      ? HOST_OPERATIONS[service]
      : undefined;
    if (dot < 0 || !operations?.includes(operation)) {
      throw new HavenError('not_available', `this host agent has no operation '${method}'`, { method });
    }
    const target = services[service] as unknown as Record<string, (params: unknown) => Promise<unknown>>;
    return target[operation]!.call(target, params ?? {});
  };
}

export type HostCall = (method: string, params: unknown) => Promise<unknown>;

/**
 * HostServices on the vault side, over `call` (e.g. `(m, p) => server.call(hostId, m, p)`);
 * errors come back as the host's HavenErrors, or `unreachable`.
 */
export function remoteHostServices(call: HostCall): HostServices {
  const services: Record<string, Record<string, (params?: unknown) => Promise<unknown>>> = {};
  for (const [service, operations] of Object.entries(HOST_OPERATIONS)) {
    services[service] = Object.fromEntries(
      operations.map((operation) => [
        operation,
        (params?: unknown) => call(`${service}.${operation}`, params ?? {}),
      ]),
    );
  }
  return services as unknown as HostServices;
}
