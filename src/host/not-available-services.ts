/**
 * The host operations whose data path does not exist yet. Each one refuses
 * with `not_available`, naming the operation and the issue that brings it,
 * instead of pretending to work.
 */
import { HavenError } from '../errors/index.ts';
import { HOST_OPERATIONS, type HostServices } from './host-services.ts';

type DataPathServices = Omit<HostServices, 'host'>;

const landsWith: Record<keyof DataPathServices, string> = {
  disk: 'the disk service lands with issue 3',
  replication: 'replication lands with issue 4',
  replica: 'the replica store lands with issue 4',
  hypervisor: 'the QEMU hypervisor driver lands with issue 5',
};

export function notAvailableServices(): DataPathServices {
  const services: Record<string, Record<string, () => Promise<never>>> = {};
  for (const [service, reason] of Object.entries(landsWith)) {
    const operations = HOST_OPERATIONS[service as keyof DataPathServices];
    services[service] = Object.fromEntries(
      operations.map((operation) => [
        operation,
        async () => {
          throw new HavenError('not_available', `${service}.${operation} is not available yet: ${reason}`, {
            operation: `${service}.${operation}`,
          });
        },
      ]),
    );
  }
  return services as unknown as DataPathServices;
}
