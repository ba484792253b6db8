/**
 * `haven host`: enrols once if needed, then holds the control channel to the
 * vault: heartbeats, inventory on every (re)connect, events, and the vault's
 * calls served by HostServices. Services without a data path yet answer
 * `not_available` (see not-available-services.ts).
 */
import { readFileSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { hostname, uptime } from 'node:os';
import { ControlClient, credentialHashOf } from '../control/index.ts';
import { HavenError } from '../errors/index.ts';
import { checkedHypervisor } from './checked-hypervisor.ts';
import { type EnrolOptions, enrol } from './enrol.ts';
import { createHostDispatcher } from './host-dispatcher.ts';
import { type HostIdentity, hostIdentityPath, loadHostIdentity } from './host-identity.ts';
import type {
  DiskExport,
  HostInfo,
  HostInfoService,
  HostServices,
  HypervisorInventory,
  MachineStatus,
  ServerEndpoint,
} from './host-services.ts';
import { notAvailableServices } from './not-available-services.ts';

export interface HostAgentOptions {
  dataDir: string;
  /** Used only when the data directory holds no host.json yet. */
  enrol?: Omit<
    EnrolOptions,
    'dataDir' | 'capabilities' | 'version' | 'replicationAddress' | 'storageFolders'
  >;
  /** Implemented services; the others answer not_available. */
  services?: Partial<Omit<HostServices, 'host'>>;
  /** Defaults to the package version. */
  version?: string;
  /** What this host can do, e.g. 'disk-service', 'replica-store', 'hypervisor:qemu'. */
  capabilities?: string[];
  replicationAddress?: string | null;
  /** Folders disk images may be attached from, reported so the vault checks disk sources at the request. */
  storageFolders?: string[];
  /** Fingerprint of the replication certificate, reported so the vault can hand it to peers. */
  replicationFingerprint?: string | null;
  /** Where physical servers reach this host, reported in host.info. */
  serverEndpoint?: ServerEndpoint | null;
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number };
  connectTimeoutMs?: number;
  /** One line per connection change; defaults to stderr. */
  log?: (line: string) => void;
}

export interface HostInventory {
  hostname: string;
  version: string;
  capabilities: string[];
  replicationAddress: string | null;
  replicationFingerprint: string | null;
  storageFolders: string[];
  /** null when the service is not available on this host yet. */
  machines: MachineStatus[] | null;
  disks: DiskExport[] | null;
  /** Every domain of the host's hypervisor, described in full; null without a hypervisor driver. */
  hypervisor: HypervisorInventory | null;
}

export interface HostAgent {
  readonly identity: HostIdentity;
  readonly client: ControlClient;
  readonly services: HostServices;
  /** Sends the inventory now (it is also sent on every connect). */
  reportInventory(): Promise<boolean>;
  /** One-way event to the vault (e.g. a disk error); false if not connected (events are not queued). */
  sendEvent(event: { kind: string } & Record<string, unknown>): boolean;
  stop(): Promise<void>;
}

export function agentVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export function hostInfoService(options: {
  dataDir: string;
  version: string;
  capabilities: string[];
  replicationAddress: string | null;
  storageFolders: string[];
  serverEndpoint?: ServerEndpoint | null;
}): HostInfoService {
  return {
    async info(): Promise<HostInfo> {
      const fs = await statfs(options.dataDir);
      return {
        hostname: hostname(),
        version: options.version,
        capabilities: options.capabilities,
        replicationAddress: options.replicationAddress,
        storageFolders: options.storageFolders,
        platform: `${process.platform}-${process.arch}`,
        dataDir: options.dataDir,
        dataDirFreeBytes: fs.bavail * fs.bsize,
        dataDirTotalBytes: fs.blocks * fs.bsize,
        uptimeSeconds: Math.round(uptime()),
        serverEndpoint: options.serverEndpoint ?? null,
      };
    },
    async ping() {
      return { time: new Date().toISOString() };
    },
  };
}

/** A service's answer, or null while it is not available on this host. */
async function listingOrNull<T>(list: () => Promise<T>): Promise<T | null> {
  try {
    return await list();
  } catch (error) {
    if (error instanceof HavenError && error.code === 'not_available') return null;
    throw error;
  }
}

export async function startHostAgent(options: HostAgentOptions): Promise<HostAgent> {
  const log = options.log ?? ((line: string) => console.error(line));
  const version = options.version ?? agentVersion();
  const capabilities = options.capabilities ?? [];
  const replicationAddress = options.replicationAddress ?? null;
  const storageFolders = options.storageFolders ?? [];

  const identity = (await loadHostIdentity(options.dataDir)) ?? (await enrolFirst());
  async function enrolFirst(): Promise<HostIdentity> {
    if (!options.enrol) {
      throw new HavenError(
        'not_found',
        `${hostIdentityPath(options.dataDir)} does not exist: enrol this host first (haven host --vault URL --token TOKEN --name NAME --site SITE)`,
        { dataDir: options.dataDir },
      );
    }
    const enrolled = await enrol({
      ...options.enrol,
      dataDir: options.dataDir,
      capabilities,
      version,
      replicationAddress,
      storageFolders,
    });
    log(`enrolled as host '${enrolled.name}' (${enrolled.hostId}) with the vault at ${enrolled.apiUrl}`);
    return enrolled;
  }

  const services: HostServices = {
    ...notAvailableServices(),
    ...options.services,
    // Whatever the driver: boot files only from the storage folders (checked-hypervisor.ts).
    ...(options.services?.hypervisor
      ? { hypervisor: checkedHypervisor(options.services.hypervisor, storageFolders) }
      : {}),
    host: hostInfoService({
      dataDir: options.dataDir,
      version,
      capabilities,
      replicationAddress,
      storageFolders,
      serverEndpoint: options.serverEndpoint ?? null,
    }),
  };

  const inventory = async (): Promise<HostInventory> => ({
    hostname: hostname(),
    version,
    capabilities,
    replicationAddress,
    replicationFingerprint: options.replicationFingerprint ?? null,
    storageFolders,
    machines: await listingOrNull(() => services.hypervisor.list()),
    disks: await listingOrNull(() => services.disk.list()),
    hypervisor: await listingOrNull(() => services.hypervisor.inventory()),
  });

  const reportInventory = async (): Promise<boolean> => client.notify('inventory', await inventory());

  const address = identity.controlAddress;
  const client: ControlClient = new ControlClient({
    address,
    vaultFingerprint: identity.vaultFingerprint,
    hostId: identity.hostId,
    credentialHash: credentialHashOf(identity.hostSecret),
    handleRequest: createHostDispatcher(services),
    reconnect: options.reconnect,
    connectTimeoutMs: options.connectTimeoutMs,
    onConnected: async () => {
      log(`connected to the vault at ${address} as host '${identity.name}'`);
      await reportInventory();
    },
    onDisconnected: (error) => {
      log(`lost the vault at ${address}: ${error.message}`);
    },
    onConnectFailed: (error, retryInMs) => log(`${error.message}; retrying in ${retryInMs} ms`),
  });
  client.start();

  return {
    identity,
    client,
    services,
    reportInventory,
    sendEvent: (event) => client.notify('event', { time: new Date().toISOString(), ...event }),
    stop: () => client.stop(),
  };
}
