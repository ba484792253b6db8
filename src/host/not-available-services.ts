/**
 * The host operations of services a host agent was started without (a host
 * with no hypervisor, a test host with only some services). Each one refuses
 * with `not_available`, naming the operation and what the host lacks,
 * instead of pretending to work.
 */
import { HavenError } from '../errors/index.ts';
import { HOST_OPERATIONS, type HostServices } from './host-services.ts';

type DataPathServices = Omit<HostServices, 'host'>;

const landsWith: Record<keyof DataPathServices, string> = {
  disk: 'this host runs no disk service',
  replication: 'this host runs no replication service',
  replica: 'this host has no replica store',
  hypervisor: 'this host has no hypervisor driver',
  mirror: 'this host drives no hypervisor that can mirror a running machine (haven host --libvirt URI)',
  network: 'this host has no hypervisor driver, so no isolated test network',
  servers: 'this host serves no physical servers (haven host --server-listen ADDRESS)',
};

export function notAvailableServices(): DataPathServices {
  const services: Record<string, Record<string, () => Promise<never>>> = {};
  for (const [service, reason] of Object.entries(landsWith)) {
    const operations = HOST_OPERATIONS[service as keyof DataPathServices];
    services[service] = Object.fromEntries(
      operations.map((operation) => [
        operation,
        async () => {
          throw new HavenError('not_available', `${service}.${operation} is not available: ${reason}`, {
            operation: `${service}.${operation}`,
          });
        },
      ]),
    );
  }
  return services as unknown as DataPathServices;
}
