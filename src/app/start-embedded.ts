import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ApiClient } from '../client/api-client.ts';
import type { Machine, Site } from '../domain/model.ts';
import { type HostOptions, loadHostIdentity, type RunningHost, startHost } from '../host/index.ts';
import type { ShareGroup } from '../storage/share-group.ts';
import { ensureDemoMachine } from './demo-machine.ts';
import { ensurePortalBuilt, type PortalBuild } from './ensure-portal-built.ts';
import { type RunningVault, startVault } from './start-vault.ts';

export interface EmbeddedOptions {
  dataDir: string;
  port?: number;
  /** Default: the port saved with the vault's state, or a free one on the first start (then saved). */
  controlPort?: number;
  databaseUrl?: string;
  heartbeatIntervalMs?: number;
  senderPollMs?: number;
  monitorIntervalMs?: number;
  /** Group through which a hypervisor running as another user opens the hosts' disk and view sockets. */
  shareGroup?: ShareGroup;
  /** Folders both local hosts attach disk images from; default DATA/images and DATA/demo. */
  storageFolders?: string[];
  /** Both local hosts drive libvirt at this URI instead of the built-in QEMU driver. */
  libvirt?: { uri: string };
  /** Offer the demo machine (a tiny Linux guest on the primary host); default true. */
  demo?: boolean;
  /**
   * The primary host serves physical servers here (`haven up` passes
   * 127.0.0.1, ports 10809/10810, a free port for one that is taken); absent: it serves none.
   */
  serverListen?: HostOptions['servers'];
  /** The unprivileged user plan scripts run as (default haven-script). */
  scriptUser?: string;
  log?: (line: string) => void;
}

export interface Embedded {
  vault: RunningVault;
  hosts: RunningHost[];
  adminToken: string;
  /** The portal served at the vault's URL, built by this start when its sources changed. */
  portal: PortalBuild;
  /** The demo machine as this start left it (null without the demo). */
  demo: { machine: Machine; running: boolean } | null;
  stop(): Promise<void>;
}

/**
 * How `haven up` starts its local host `name` (without enrolment: a host
 * enrolled before starts again from its saved identity).
 */
export function embeddedHostOptions(embeddedOptions: EmbeddedOptions, name: string): HostOptions {
  const dataDir = resolve(embeddedOptions.dataDir);
  return {
    dataDir: join(dataDir, 'hosts', name),
    // Both local hosts share this machine: each receiver takes a free port.
    replicationListen: { host: '127.0.0.1', port: 0 },
    ...(embeddedOptions.shareGroup ? { share: { group: embeddedOptions.shareGroup, root: dataDir } } : {}),
    ...(embeddedOptions.libvirt ? { libvirt: embeddedOptions.libvirt } : {}),
    storageFolders: embeddedOptions.storageFolders ?? [join(dataDir, 'images'), join(dataDir, 'demo')],
    ...(embeddedOptions.senderPollMs ? { senderPollMs: embeddedOptions.senderPollMs } : {}),
    ...(embeddedOptions.serverListen && name === 'primary' ? { servers: embeddedOptions.serverListen } : {}),
    log: embeddedOptions.log ?? (() => {}),
  };
}

const LOCAL_SITES = [
  { name: 'primary', role: 'primary' as const },
  { name: 'recovery', role: 'recovery' as const },
];

/**
 * `haven up`: a vault and two local hosts, "primary" and "recovery", each in
 * its own site, in one process. The hosts enrol through the REST API with
 * one-time tokens exactly as remote hosts do; on later starts they reconnect
 * with the identity they saved.
 */
export async function startEmbedded(embeddedOptions: EmbeddedOptions): Promise<Embedded> {
  // Resolved once: the demo machine's disk path is stored in the vault and compared by the host.
  const options = { ...embeddedOptions, dataDir: resolve(embeddedOptions.dataDir) };
  // Before the vault answers: its URL then serves the portal of this checkout, not a 503 or an old build.
  const portal = await ensurePortalBuilt(options.log);
  const vault = await startVault({
    dataDir: options.dataDir,
    port: options.port ?? 8440,
    ...(options.controlPort === undefined ? {} : { controlPort: options.controlPort }),
    ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : {}),
    ...(options.heartbeatIntervalMs ? { heartbeatIntervalMs: options.heartbeatIntervalMs } : {}),
    ...(options.monitorIntervalMs ? { monitorIntervalMs: options.monitorIntervalMs } : {}),
    ...(options.scriptUser ? { scriptUser: options.scriptUser } : {}),
  });
  const hosts: RunningHost[] = [];
  try {
    const adminToken =
      vault.adminToken ?? (await readFile(join(options.dataDir, 'admin.token'), 'utf8')).trim();
    const api = new ApiClient({ url: vault.url, token: adminToken });
    const { sites } = await api.get<{ sites: Site[] }>('/sites');
    for (const wanted of LOCAL_SITES) {
      if (!sites.some((s) => s.name === wanted.name))
        await api.post('/sites', { ...wanted, testNetwork: `${wanted.name}-test` });
    }
    for (const { name } of LOCAL_SITES) {
      const dataDir = join(options.dataDir, 'hosts', name);
      let enrol: { apiUrl: string; token: string; name: string; site: string } | undefined;
      if (!(await loadHostIdentity(dataDir))) {
        const { token } = await api.post<{ token: string }>('/enrolment-tokens', {
          siteId: name,
          hostName: name,
        });
        enrol = { apiUrl: vault.url, token, name, site: name };
      }
      hosts.push(await startHost({ ...embeddedHostOptions(options, name), ...(enrol ? { enrol } : {}) }));
    }
    // The hosts must be connected before the demo machine can be started through them.
    for (
      let i = 0;
      i < 200 && hosts.some((h) => !vault.context.hosts.isConnected(h.agent.identity.hostId));
      i++
    ) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const demo =
      options.demo === false
        ? null
        : await ensureDemoMachine(api, vault.context, options.dataDir, options.log ?? (() => {}));
    return {
      vault,
      hosts,
      adminToken,
      portal,
      demo,
      stop: async () => {
        // `haven up` owns its QEMU driver's machines: they stop with it (a standalone host agent leaves
        // them running). libvirt's domains are the operator's, whoever defined them: they keep running.
        for (const host of hosts.filter((h) => h.hypervisorDriver === 'qemu')) {
          const hypervisor = host.agent.services.hypervisor;
          for (const vm of await hypervisor.list().catch(() => [])) {
            await hypervisor.fence({ name: vm.name }).catch(() => {});
          }
        }
        for (const host of hosts) await host.stop();
        await vault.stop();
      },
    };
  } catch (error) {
    for (const host of hosts) await host.stop();
    await vault.stop();
    throw error;
  }
}
