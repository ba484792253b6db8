import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningVault, startVault } from '../../app/start-vault.ts';
import type { Host, Machine } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { JobDefinition } from '../../job-engine/index.ts';
import { lifecycleJob } from '../jobs/lifecycle-job.ts';
import type { VaultContext } from '../vault-context.ts';

type Call = <T = Record<string, unknown>>(
  method: string,
  path: string,
  body?: unknown,
) => Promise<{ status: number; body: T; type: string | null }>;

export interface PlanTestVault {
  vault: RunningVault;
  dataDir: string;
  token: string;
  /** The vault's scripts folder, and the user scripts run as (removed by stop). */
  scriptsDir: string;
  scriptUser: string;
  /** Registers a script as an admin would: an executable only root can change. */
  addScript(name: string, body: string): Promise<void>;
  /** Protected machines by name. */
  machines: Record<string, Machine>;
  /** Calls the API as the admin. */
  call: Call;
  /** Calls the API with a token of its own role. */
  callAs(role: 'viewer' | 'operator'): Promise<Call>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A vault whose 'test-failover' machine job is a stand-in: it waits
 * `bootMs` (or fails for machines named fail-*), so plan ordering, actions,
 * waiting and refusals are tested in process without guests. The real
 * machine jobs run under a plan in plan-e2e.test.ts.
 */
export async function startPlanTestVault(
  names: string[],
  bootMs = 150,
  more: {
    /** More stand-in jobs (they replace the vault's own of the same kind). */
    jobs?: (vault: () => VaultContext) => JobDefinition[];
    drillTickMs?: number;
  } = {},
): Promise<PlanTestVault> {
  const dataDir = await mkdtemp(join(tmpdir(), 'haven-plans-'));
  let vault: RunningVault | null = null;
  const standIn = lifecycleJob(() => vault!.context, {
    operation: 'test-failover',
    steps: () => [
      {
        name: 'boot',
        title: 'Boot the copy',
        retrySafe: true,
        run: async (ctx) => {
          await sleep(bootMs);
          if (ctx.machine.name.startsWith('fail-')) throw new HavenError('unreachable', 'host kvm-b is gone');
        },
      },
    ],
  });
  // One user per test process, so parallel test files never share (or delete) another's.
  const scriptUser = `haven-st-${process.pid}`;
  vault = await startVault({
    dataDir,
    port: 0,
    jobs: [standIn, ...(more.jobs?.(() => vault!.context) ?? [])],
    jobPollMs: 20,
    scriptUser,
    ...(more.drillTickMs ? { drillTickMs: more.drillTickMs } : {}),
  });
  const running = vault;
  const scriptsDir = running.context.scripts.registry.dir;
  const callWith =
    (token: string): Call =>
    async <T>(method: string, path: string, body?: unknown) => {
      const response = await running.app.request(`/api/v1${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        // not JSON (YAML export)
      }
      return { status: response.status, body: parsed as T, type: response.headers.get('content-type') };
    };
  const token = running.adminToken!;
  const call = callWith(token);
  const callAs = async (role: 'viewer' | 'operator') => {
    const created = await call<{ token: string }>('POST', '/tokens', { name: `a ${role}`, role });
    return callWith(created.body.token);
  };

  await call('POST', '/sites', { name: 'dc1', role: 'primary', networkMapping: {} });
  const site = (await call<{ sites: { id: string }[] }>('GET', '/sites')).body.sites[0]!;
  const enrol = await call<{ token: string }>('POST', '/enrolment-tokens', {
    siteId: site.id,
    hostName: 'kvm-a',
  });
  const enrolled = await running.app.request('/api/v1/hosts/enrol', {
    method: 'POST',
    headers: { authorization: `Bearer ${enrol.body.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'kvm-a', storageFolders: ['/images'] }),
  });
  const hostId = ((await enrolled.json()) as { hostId: string }).hostId;
  const host = (await call<Host>('GET', `/hosts/${hostId}`)).body;
  const machines: Record<string, Machine> = {};
  for (const name of names) {
    const { body } = await call<Machine>('POST', '/machines', {
      name,
      hostId: host.id,
      disks: [{ id: 'disk0', sizeBytes: 1 << 20, source: `/images/${name}.img` }],
      recoverySettings: { targetName: name, cpus: 1, memoryMiB: 256, nics: [] },
    });
    // Stand-in for enable-replication: the state and recovery host it would leave.
    await running.context.store.machines.update({ ...body, recoveryHostId: host.id });
    assert.ok(
      await running.context.store.machines.transition(
        body.id,
        'unprotected',
        'protected',
        null,
        body.createdAt,
      ),
    );
    machines[name] = (await running.context.store.machines.get(body.id))!;
  }
  return {
    vault: running,
    dataDir,
    token,
    scriptsDir,
    scriptUser,
    addScript: async (name, body) => {
      const file = join(scriptsDir, name);
      await writeFile(file, body);
      await chmod(file, 0o755);
    },
    machines,
    call,
    callAs,
    stop: async () => {
      await running.stop();
      await rm(dataDir, { recursive: true, force: true });
      // The vault created it at the first script run (if any ran as root).
      await new Promise<void>((resolve) => execFile('userdel', [scriptUser], () => resolve()));
    },
  };
}
