import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import { createApi } from '../api/create-api.ts';
import { allRoutes } from '../api/routes/index.ts';
import { DEFAULT_PORTAL_DIR } from '../api/serve-portal.ts';
import { type Clock, isoNow, systemClock } from '../clock/index.ts';
import { ControlServer } from '../control/control-server.ts';
import { isLoopbackHost } from '../control/loopback.ts';
import {
  certificateFingerprint,
  generateVaultIdentity,
  type VaultIdentity,
} from '../control/vault-identity.ts';
import { AUTOMATIC_FAILBACK_POLICY, DEFAULT_POLICY } from '../domain/index.ts';
import { HavenError } from '../errors/index.ts';
import { type JobDefinition, JobEngine } from '../job-engine/index.ts';
import { DEFAULT_SCRIPT_USER } from '../scripts/index.ts';
import { PRIVATE_DIR_MODE, restrictUmask, tightenDataDir } from '../storage/private-files.ts';
import { openStore, type Store } from '../store/index.ts';
import { DrillScheduler, drillJob, planDrillJob } from '../vault/drills/index.ts';
import { GroupScheduler } from '../vault/groups/index.ts';
import { watchHosts } from '../vault/host-monitor.ts';
import { reconcileHost } from '../vault/host-reconcile.ts';
import { answerHostRequest } from '../vault/host-requests.ts';
import { completeFailoverJob, failbackJob, reprotectJob } from '../vault/jobs/failback-jobs.ts';
import {
  changeRecoveryPointJob,
  cleanupTestFailoverJob,
  commitJob,
  failoverJob,
  plannedFailoverJob,
  testFailoverJob,
} from '../vault/jobs/failover-jobs.ts';
import type { VaultJobInputs } from '../vault/jobs/job-inputs.ts';
import { disableReplicationJob, enableReplicationJob } from '../vault/jobs/replication-jobs.ts';
import { resyncJob } from '../vault/jobs/resync-job.ts';
import { vaultBackupJob } from '../vault/jobs/vault-backup-job.ts';
import { recoveryPlanJob } from '../vault/plans/index.ts';
import { reconcileViews } from '../vault/point-access.ts';
import { ReplicationMonitor } from '../vault/replication-monitor.ts';
import { ScriptRegistry } from '../vault/scripts/index.ts';
import { SourceFencer } from '../vault/source-fence.ts';
import { API_TOKEN_PREFIX, hashSecret, newSecret } from '../vault/token-secret.ts';
import type { VaultContext } from '../vault/vault-context.ts';
import { HAVEN_VERSION } from '../vault/version.ts';

export interface VaultOptions {
  dataDir: string;
  /** HTTP API/portal address; port 0 picks a free one. */
  host?: string;
  port?: number;
  /**
   * TLS of the REST API and portal: the operator's certificate, the vault's
   * own self-signed identity (the control channel's), or none. Default:
   * self-signed when listening beyond loopback, plain HTTP on loopback.
   */
  apiTls?: { certPem: string; keyPem: string } | 'self-signed' | 'none';
  /** Control channel address for hosts (SPEC §6: ASR's 443). */
  controlHost?: string;
  /**
   * The control channel's port (0: a free one), saved with the vault's state:
   * enrolled hosts keep the address they enrolled with, so later starts that
   * give no port listen on the saved one.
   */
  controlPort?: number;
  /** The port of the first start when none is given (default 0: a free one, saved). */
  firstControlPort?: number;
  /** PostgreSQL URL; default a SQLite file in dataDir. */
  databaseUrl?: string;
  clock?: Clock;
  heartbeatIntervalMs?: number;
  missedHeartbeats?: number;
  jobLeaseMs?: number;
  jobPollMs?: number;
  /** Names and addresses hosts use to reach the vault (go into its certificate). */
  hostNames?: string[];
  /** How often the replication monitor asks hosts for RPO and status. */
  monitorIntervalMs?: number;
  /** Job kinds beyond the vault's own (tests drive the engine through a real vault with these). */
  jobs?: JobDefinition[];
  /** Crash-consistent cut of every consistency group this often (default 60 s). */
  groupCutIntervalMs?: number;
  /** Script the vault runs as `<hook> freeze|thaw` for app-consistent points; none: no app-consistent points. */
  appConsistencyHook?: string;
  /** How long a job carried over from before a restart waits for its hosts to reconnect (default 60 s). */
  hostReconnectWaitMs?: number;
  /** Folder of the scripts plans may run (default DATA/scripts); only root (the vault's user) may write it. */
  scriptsDir?: string;
  /** The unprivileged user scripts run as when the vault runs as root (created on first use). */
  scriptUser?: string;
  /** How often the drill scheduler looks at its schedules (default 5 s). */
  drillTickMs?: number;
  /** Alert when a scheduled machine or plan has had no passing drill for longer (default 7 days). */
  drillMaxAgeWithoutPassMs?: number;
}

export interface RunningVault {
  url: string;
  controlAddress: string;
  fingerprint: string;
  /** SHA-256 of the REST API's certificate (clients pin it); null when it serves plain HTTP. */
  apiFingerprint: string | null;
  /** The admin token, when this start created it (first start). */
  adminToken: string | null;
  context: VaultContext;
  /** The API as a Hono app: tests call `app.request()` in process. */
  app: Hono;
  stop(): Promise<void>;
}

const IDENTITY_KEY = 'vault.identity';
const CONTROL_PORT_KEY = 'vault.controlPort';

/**
 * Starts a vault: state store, identity, built-in policies, the first admin
 * token, the job engine, the control channel for hosts and the REST API.
 */
export async function startVault(vaultOptions: VaultOptions): Promise<RunningVault> {
  // Resolved once: paths the vault hands on (the demo's disk, backups) mean the same from any process.
  const options = { ...vaultOptions, dataDir: resolve(vaultOptions.dataDir) };
  const clock = options.clock ?? systemClock;
  restrictUmask();
  await tightenDataDir(options.dataDir);
  const store = await openStore({
    dataDir: options.dataDir,
    ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : {}),
  });
  /** What the start has opened, closed again (last first) when a later step fails. */
  const started: Array<() => Promise<void>> = [];
  try {
    const identity = await loadIdentity(store, options.hostNames ?? []);
    await seedPolicies(store, clock);
    const adminToken = await ensureAdminToken(store, clock, options.dataDir);
    const scriptsDir = options.scriptsDir ?? join(options.dataDir, 'scripts');
    await mkdir(scriptsDir, { recursive: true, mode: PRIVATE_DIR_MODE });

    let context: VaultContext | null = null;
    const contextReady = Promise.withResolvers<VaultContext>();
    const engine = new JobEngine<VaultJobInputs>({
      store,
      clock,
      definitions: [
        vaultBackupJob(() => context!),
        enableReplicationJob(() => context!),
        disableReplicationJob(() => context!),
        testFailoverJob(() => context!),
        cleanupTestFailoverJob(() => context!),
        failoverJob(() => context!),
        plannedFailoverJob(() => context!),
        changeRecoveryPointJob(() => context!),
        commitJob(() => context!),
        reprotectJob(() => context!),
        failbackJob(() => context!),
        completeFailoverJob(() => context!),
        resyncJob(() => context!),
        recoveryPlanJob(() => context!),
        drillJob(() => context!),
        planDrillJob(() => context!),
        ...(options.jobs ?? []),
      ],
      ...(options.jobLeaseMs ? { leaseMs: options.jobLeaseMs } : {}),
      ...(options.jobPollMs ? { pollMs: options.jobPollMs } : {}),
    });

    const sourceFencer = new SourceFencer(() => context!);
    const control = new ControlServer({
      keyPem: identity.keyPem,
      certPem: identity.certPem,
      credentialHash: (hostId) => store.hosts.credentialHash(hostId),
      handleRequest: async (hostId, method, params) =>
        answerHostRequest(await contextReady.promise, hostId, method, params),
      // A host may connect before the context below exists; its reconciliation waits for it.
      // A source a failover left running there is stopped first, before its replication is touched.
      events: watchHosts(store, clock, async (hostId) => {
        const vault = await contextReady.promise;
        await sourceFencer.fenceOn(hostId);
        const stopped = await reconcileHost(vault, hostId);
        await reconcileViews(vault, hostId);
        return stopped;
      }),
      ...(options.heartbeatIntervalMs ? { heartbeatIntervalMs: options.heartbeatIntervalMs } : {}),
      ...(options.missedHeartbeats ? { missedHeartbeats: options.missedHeartbeats } : {}),
    });
    const controlBound = await listenControl(control, store, options);
    started.push(() => control.close());
    const controlAddress = `${controlBound.host}:${controlBound.port}`;
    // Hosts enrolled earlier must check in; those that do not become unreachable.
    for (const host of await store.hosts.list()) control.expectHost(host.id);

    context = {
      store,
      engine,
      clock,
      version: HAVEN_VERSION,
      dataDir: options.dataDir,
      ...(options.hostReconnectWaitMs === undefined
        ? {}
        : { hostReconnectWaitMs: options.hostReconnectWaitMs }),
      scripts: { registry: new ScriptRegistry(scriptsDir), user: options.scriptUser ?? DEFAULT_SCRIPT_USER },
      hosts: {
        isConnected: (hostId) => control.isConnected(hostId),
        call: async <T>(hostId: string, method: string, params?: unknown, o?: { timeoutMs?: number }) =>
          (await control.call(
            hostId,
            method,
            params ?? {},
            o?.timeoutMs ? { timeoutMs: o.timeoutMs } : {},
          )) as T,
      },
      controlEndpoint: () => ({ controlAddress, vaultFingerprint: identity.fingerprint }),
    };
    contextReady.resolve(context);
    // The API's port first: a port in use fails the start before any job runs or monitor polls.
    const app = createApi({
      store,
      routes: allRoutes(context),
      version: HAVEN_VERSION,
      portalDir: DEFAULT_PORTAL_DIR,
    });
    const hostname = options.host ?? '127.0.0.1';
    const tls = apiTlsOf(options.apiTls, hostname, identity);
    // A port already in use must fail the start (the CLI names it), not leave it waiting forever.
    const server = await new Promise<Server>((resolve, reject) => {
      const s = serve(
        {
          fetch: app.fetch,
          hostname,
          port: options.port ?? 8440,
          ...(tls
            ? { createServer: createHttpsServer, serverOptions: { key: tls.keyPem, cert: tls.certPem } }
            : {}),
        },
        () => resolve(s as Server),
      );
      s.once('error', reject);
    });
    await engine.start({ exclusive: store.dialect === 'sqlite' });
    const monitor = new ReplicationMonitor(context, { intervalMs: options.monitorIntervalMs ?? 5000 });
    monitor.start();
    const groupScheduler = new GroupScheduler(context, {
      ...(options.groupCutIntervalMs ? { groupCutIntervalMs: options.groupCutIntervalMs } : {}),
      ...(options.appConsistencyHook ? { appConsistencyHook: options.appConsistencyHook } : {}),
    });
    groupScheduler.start();
    const drillScheduler = new DrillScheduler(context, {
      ...(options.drillTickMs ? { tickMs: options.drillTickMs } : {}),
      ...(options.drillMaxAgeWithoutPassMs ? { maxAgeWithoutPassMs: options.drillMaxAgeWithoutPassMs } : {}),
    });
    drillScheduler.start();
    sourceFencer.start();

    const address = server.address() as AddressInfo;
    const apiFingerprint = tls ? certificateFingerprint(tls.certPem) : null;
    const url = `${tls ? 'https' : 'http'}://${address.address.includes(':') ? `[${address.address}]` : address.address}:${address.port}`;
    await writeFile(
      join(options.dataDir, 'vault.json'),
      `${JSON.stringify({ url, apiFingerprint, controlAddress, fingerprint: identity.fingerprint }, null, 2)}\n`,
    );

    return {
      url,
      controlAddress,
      fingerprint: identity.fingerprint,
      apiFingerprint,
      adminToken,
      context,
      app,
      stop: async () => {
        server.closeAllConnections?.();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await monitor.stop();
        await groupScheduler.stop();
        await drillScheduler.stop();
        await sourceFencer.stop();
        await control.close();
        await engine.stop();
        await store.close();
      },
    };
  } catch (error) {
    for (const stop of started.reverse()) await stop().catch(() => {});
    await store.close();
    throw error;
  }
}

/** Listens on the given control port, else the saved one, else the first start's; saves the bound port. */
async function listenControl(
  control: ControlServer,
  store: Store,
  options: VaultOptions,
): Promise<{ host: string; port: number }> {
  const saved = await store.settings.get(CONTROL_PORT_KEY);
  const port = options.controlPort ?? (saved === undefined ? (options.firstControlPort ?? 0) : Number(saved));
  const host = options.controlHost ?? '127.0.0.1';
  const bound = await control.listen({ host, port }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EADDRINUSE') throw error;
    throw new HavenError(
      'conflict',
      options.controlPort === undefined
        ? `the vault's control port ${host}:${port} (saved with its state; its hosts connect there) is in use: free it, or pass --control-port N and enrol the hosts again`
        : `control port ${host}:${port} is in use; pass --control-port N`,
      { field: 'control-port', port },
    );
  });
  if (saved !== String(bound.port)) await store.settings.set(CONTROL_PORT_KEY, String(bound.port));
  return bound;
}

/** Loopback may stay plain HTTP (nothing crosses a network); anything else gets TLS unless told otherwise. */
function apiTlsOf(
  choice: VaultOptions['apiTls'],
  hostname: string,
  identity: VaultIdentity,
): { certPem: string; keyPem: string } | null {
  if (choice === 'none') return null;
  if (typeof choice === 'object') return choice;
  if (choice === 'self-signed' || !isLoopbackHost(hostname))
    return { certPem: identity.certPem, keyPem: identity.keyPem };
  return null;
}

/** The identity lives in the database so a restored backup is the same vault to its hosts. */
async function loadIdentity(store: Store, hostNames: string[]): Promise<VaultIdentity> {
  const stored = await store.settings.get(IDENTITY_KEY);
  if (stored) return JSON.parse(stored) as VaultIdentity;
  const identity = await generateVaultIdentity({ hostNames });
  await store.settings.set(IDENTITY_KEY, JSON.stringify(identity));
  return identity;
}

async function seedPolicies(store: Store, clock: Clock): Promise<void> {
  const now = isoNow(clock);
  if (!(await store.policies.get(AUTOMATIC_FAILBACK_POLICY.id))) {
    await store.policies.create({ ...AUTOMATIC_FAILBACK_POLICY, createdAt: now });
  }
  if ((await store.policies.list()).filter((p) => !p.builtIn).length === 0) {
    await store.policies.create({ ...DEFAULT_POLICY, id: randomUUID(), createdAt: now });
  }
}

/** First start: create an admin token and leave it in DATA/admin.token (0600) for the operator. */
async function ensureAdminToken(store: Store, clock: Clock, dataDir: string): Promise<string | null> {
  if ((await store.tokens.countByRole('admin')) > 0) return null;
  const secret = newSecret(API_TOKEN_PREFIX);
  await store.tokens.create({
    id: randomUUID(),
    name: 'admin',
    role: 'admin',
    createdAt: isoNow(clock),
    lastUsedAt: null,
    secretHash: hashSecret(secret),
  });
  await writeFile(join(dataDir, 'admin.token'), `${secret}\n`, { mode: 0o600 });
  return secret;
}
