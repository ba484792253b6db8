import { isoNow } from '../../clock/index.ts';
import type { Disk, Host, Machine, RecoverySettings, ServerSettings } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { BmcAccess, ServerEndpoint } from '../../host/host-services.ts';
import { checkBootPaths } from '../../host/storage-folders.ts';
import { hostServices } from '../host-call.ts';
import { checkRunnable } from '../machine-power.ts';
import { newMachine } from '../new-machine.ts';
import { newEnrolmentToken, SERVER_ENROLMENT_TOKEN_PREFIX } from '../token-secret.ts';
import type { VaultContext } from '../vault-context.ts';

/** How long a server's enrolment token stays usable. */
const SERVER_ENROLMENT_TTL_MS = 24 * 3600 * 1000;
/** Where the commands put the host's server CA on the server. */
const CA_FILE = '/etc/haven/server-ca.pem';

export interface AddServerRequest {
  name: string;
  siteId: string;
  hostId?: string | undefined;
  disks: Array<{ id: string; device: string; sizeBytes: number }>;
  writeBehind: number | null;
  nbdTimeoutSeconds: number;
  /** Its BMC with the password (kept apart from the machine); null or absent: none. */
  bmc?: BmcAccess | null | undefined;
  recoverySettings?: RecoverySettings | undefined;
}

/** A new enrolment: the token (shown once), when it expires, and what to run on the server as root. */
export interface ServerEnrolmentIssued {
  token: string;
  expiresAt: string;
  commands: string[];
  /** How writes reach the NBD leg, and what that means for the recovery points (write-behind is weaker). */
  writeOrdering: string;
}

/** What the order of writes on the NBD leg means for the recovery points: said where the choice is made. */
function writeOrderingOf(settings: Pick<ServerSettings, 'writeBehind'>): string {
  if (settings.writeBehind === null) {
    return 'synchronous: md acknowledges a write once the NBD leg has it too, so every recovery point holds every write the server acknowledged before it (each write waits for the link to the primary-site host)';
  }
  return `write-behind (up to ${settings.writeBehind} writes): md acknowledges writes before the NBD leg has them, so a recovery point (and a failover) may lack up to ${settings.writeBehind} writes the server had already acknowledged; choose it only for a slow link`;
}

/**
 * The host a server's NBD legs connect to: the one named (it must be in the
 * site), else the site's first connected host. It must be connected and
 * serve physical servers (answer `servers.endpoint`).
 */
async function serverHost(
  vault: VaultContext,
  request: Pick<AddServerRequest, 'siteId' | 'hostId'>,
): Promise<{ host: Host; endpoint: ServerEndpoint }> {
  const { store } = vault;
  const site = (await store.sites.get(request.siteId)) ?? (await store.sites.getByName(request.siteId));
  if (!site) {
    throw new HavenError('bad_request', `siteId: site '${request.siteId}' does not exist`, {
      field: 'siteId',
    });
  }
  const inSite = (await store.hosts.list()).filter((h) => h.siteId === site.id);
  let host: Host | undefined;
  if (request.hostId !== undefined) {
    host = inSite.find((h) => h.id === request.hostId || h.name === request.hostId);
    if (!host) {
      throw new HavenError(
        'bad_request',
        `hostId: site '${site.name}' has no host '${request.hostId}' (its hosts: ${inSite.map((h) => h.name).join(', ') || 'none'})`,
        { field: 'hostId', siteId: site.id },
      );
    }
  } else {
    host = inSite.find((h) => vault.hosts.isConnected(h.id));
    if (!host) {
      throw new HavenError(
        'unreachable',
        `site '${site.name}' has no host connected to the vault (its hosts: ${inSite.map((h) => h.name).join(', ') || 'none'}); start one's agent, or name one with hostId`,
        { siteId: site.id },
      );
    }
  }
  return { host, endpoint: await endpointOf(vault, host) };
}

/** The host's server endpoint, or a refusal naming the host and why it cannot take servers. */
async function endpointOf(vault: VaultContext, host: Host): Promise<ServerEndpoint> {
  if (!vault.hosts.isConnected(host.id)) {
    throw new HavenError(
      'unreachable',
      `host '${host.name}' is not connected to the vault, so it cannot tell where servers reach it; start its agent and retry`,
      { hostId: host.id, hostName: host.name },
    );
  }
  const refused = (why: string) =>
    new HavenError(
      'conflict',
      `host '${host.name}' does not serve physical servers: ${why}; choose a host whose agent serves them`,
      { field: 'hostId', hostId: host.id, hostName: host.name },
    );
  let endpoint: ServerEndpoint | null;
  try {
    endpoint = await hostServices(vault, host.id).servers.endpoint();
  } catch (error) {
    if (error instanceof HavenError && error.code === 'unreachable') throw error;
    throw refused(`its agent does not answer servers.endpoint (${(error as Error).message})`);
  }
  if (endpoint === null) throw refused('its agent reports no server endpoint');
  return endpoint;
}

/** `host:port`, an IPv6 address in brackets. */
function hostPort(address: string, port: number): string {
  return `${address.includes(':') ? `[${address}]` : address}:${port}`;
}

/** The exact lines to run on the server as root (the agent itself: `haven servers agent-script`). */
function serverCommands(endpoint: ServerEndpoint, token: string): string[] {
  return [
    '# as root on the server; install the agent first: haven servers agent-script > /usr/local/sbin/haven-server-agent && chmod 755 /usr/local/sbin/haven-server-agent',
    'mkdir -p -m 700 /etc/haven',
    `cat > ${CA_FILE} <<'HAVEN_SERVER_CA'`,
    ...endpoint.caCertPem.trim().split('\n'),
    'HAVEN_SERVER_CA',
    `haven-server-agent enrol --agent ${hostPort(endpoint.address, endpoint.agentPort)} --tls-hostname ${endpoint.tlsHostname} --ca-file ${CA_FILE} --token ${token}`,
    'haven-server-agent setup',
    'haven-server-agent run',
  ];
}

/** Issues a new one-time token for the server (its older unused ones stop working) and the commands for it. */
export async function issueServerEnrolment(
  vault: VaultContext,
  machine: Machine,
  actor: string,
): Promise<ServerEnrolmentIssued> {
  const settings = serverSettingsOf(machine, 'issue an enrolment token');
  const host = await vault.store.hosts.get(machine.primaryHostId);
  if (!host) throw new HavenError('not_found', `server '${machine.name}': its primary host no longer exists`);
  const endpoint = await endpointOf(vault, host);
  return issueToken(vault, machine, settings, endpoint, actor);
}

async function issueToken(
  vault: VaultContext,
  machine: Machine,
  settings: ServerSettings,
  endpoint: ServerEndpoint,
  actor: string,
): Promise<ServerEnrolmentIssued> {
  const { token, ...issued } = newEnrolmentToken(
    vault.clock.now(),
    SERVER_ENROLMENT_TTL_MS,
    SERVER_ENROLMENT_TOKEN_PREFIX,
  );
  await vault.store.serverEnrolments.issue({
    ...issued,
    machineId: machine.id,
    createdBy: actor,
    usedAt: null,
    replacedAt: null,
  });
  return {
    token,
    expiresAt: issued.expiresAt,
    commands: serverCommands(endpoint, token),
    writeOrdering: writeOrderingOf(settings),
  };
}

/** A server's settings, or a refusal naming the machine and its kind. */
function serverSettingsOf(machine: Machine, action: string): ServerSettings {
  if (machine.server) return machine.server;
  throw new HavenError(
    'operation_not_allowed',
    `Machine '${machine.name}' is a ${machine.importedFrom ? 'libvirt domain' : 'VM'}, not a physical server: only servers ${action}`,
    { machineId: machine.id, machineName: machine.name },
  );
}

/**
 * `haven servers add`: the machine (kind server, unprotected, on the chosen
 * primary-site host, its disks the server's block devices) and its first
 * enrolment token. Everything is checked before anything is stored.
 */
export async function addServer(
  vault: VaultContext,
  request: AddServerRequest,
  actor: string,
): Promise<{ machine: Machine } & ServerEnrolmentIssued> {
  if (await vault.store.machines.getByName(request.name)) {
    throw new HavenError('conflict', `A machine named '${request.name}' already exists`, { field: 'name' });
  }
  const { host, endpoint } = await serverHost(vault, request);
  const now = isoNow(vault.clock);
  const { bmc, password } = splitBmc(request.bmc);
  const settings: ServerSettings = {
    writeBehind: request.writeBehind,
    nbdTimeoutSeconds: request.nbdTimeoutSeconds,
    enrolledAt: null,
    bmc,
  };
  const disks: Disk[] = request.disks.map((d) => ({
    id: d.id,
    sizeBytes: d.sizeBytes,
    source: d.device,
    serverDevice: d.device,
    hasSnapshots: false,
  }));
  const machine = newMachine(
    {
      name: request.name,
      osFamily: 'linux',
      disks,
      // What the server becomes at the recovery site: a VM with these.
      recoverySettings: request.recoverySettings ?? {
        targetName: request.name,
        cpus: 1,
        memoryMiB: 1024,
        nics: [],
      },
      server: settings,
    },
    host.id,
    now,
  );
  checkBootPaths('recoverySettings.boot', machine.recoverySettings.boot, host.storageFolders);
  checkRunnable(machine, { nicsAndBootOnly: true });
  await vault.store.machines.create(machine);
  if (password !== null) await vault.store.serverBmcPasswords.set(machine.id, password, now);
  return { machine, ...(await issueToken(vault, machine, settings, endpoint, actor)) };
}

/** The BMC part of the settings and its password, apart: the machine record never holds the password. */
function splitBmc(bmc: BmcAccess | null | undefined): {
  bmc: NonNullable<Machine['server']>['bmc'];
  password: string | null;
} {
  if (!bmc) return { bmc: null, password: null };
  const { password, ...where } = bmc;
  return { bmc: where, password };
}

/**
 * `haven servers update --bmc/--no-bmc`: the server's BMC (where, as whom)
 * in its settings and its password in the vault's own table, or neither.
 */
export async function setServerBmc(
  vault: VaultContext,
  machine: Machine,
  input: BmcAccess | null,
): Promise<Machine> {
  const settings = serverSettingsOf(machine, 'have a BMC');
  const { bmc, password } = splitBmc(input);
  const now = isoNow(vault.clock);
  const updated: Machine = { ...machine, server: { ...settings, bmc }, updatedAt: now };
  if (password === null) await vault.store.serverBmcPasswords.delete(machine.id);
  else await vault.store.serverBmcPasswords.set(machine.id, password, now);
  await vault.store.machines.update(updated);
  return updated;
}
