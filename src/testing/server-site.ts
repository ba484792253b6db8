/**
 * A guest playing a physical server against the primary site's side built
 * by hand (the server guest test and the two server benchmarks): a
 * DiskService export over TLS requiring a client certificate from the site's
 * CA (AgentEndpoint serves the agent's two calls) and the config lines of an
 * enrolment, reached from the guest through QEMU's user network.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DiskService } from '../disk/disk-service.ts';
import { clientCertificate, selfSignedCertificate } from './self-signed-certificate.ts';

export const MiB = 2 ** 20;
/** QEMU's user network reaches the host's loopback here; the certificates name localhost. */
export const HOST_FROM_GUEST = '10.0.2.2';
export const GUEST_IP = { address: '10.0.2.15/24', gateway: HOST_FROM_GUEST };
export const NIC = ['-netdev', 'user,id=n0', '-device', 'virtio-net-pci,netdev=n0'];

export const log = (line: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);

/** The site's CA, a client certificate it signed, and a disk service requiring one (as `haven disk serve --listen`). */
export interface TlsSite {
  caKey: string;
  caCert: string;
  clientKey: string;
  clientCert: string;
  service: DiskService;
}

/** Its files are made in `dir` (made if absent). */
export async function startTlsSite(dir: string): Promise<TlsSite> {
  await mkdir(dir, { recursive: true });
  const [caKey, caCert, clientKey, clientCert] = ['ca.key', 'ca.pem', 'client.key', 'client.pem'].map((f) =>
    join(dir, f),
  ) as [string, string, string, string];
  await selfSignedCertificate(caKey, caCert);
  await clientCertificate(caKey, caCert, clientKey, clientCert);
  const service = await DiskService.start({
    listen: { host: '127.0.0.1', port: 0 },
    tls: { key: await readFile(caKey), cert: await readFile(caCert), ca: await readFile(caCert) },
  });
  return { caKey, caCert, clientKey, clientCert, service };
}

/** The TCP port of an attached export. */
export function exportPort(uris: { tcp?: string }): number {
  return Number(new URL(uris.tcp!).port);
}

/** server.conf of one disk /dev/vda (see haven-server-agent.sh), as the enrolment answer carries it. */
export function serverConfig(options: {
  machineId: string;
  nbdPort: number;
  agentPort: number;
  sizeBytes: number;
  writeBehind?: number;
  reportSeconds?: number;
  nbdTimeoutSeconds?: number;
}): string[] {
  const { machineId } = options;
  return [
    `machine ${machineId}`,
    `name ${machineId}`,
    `nbd ${HOST_FROM_GUEST} ${options.nbdPort} localhost`,
    `agent ${HOST_FROM_GUEST} ${options.agentPort} localhost`,
    `timeout ${options.nbdTimeoutSeconds ?? 5}`,
    `writebehind ${options.writeBehind ?? 0}`,
    `report ${options.reportSeconds ?? 30}`,
    `disk disk0 /dev/vda ${machineId} ${options.sizeBytes}`,
  ];
}
