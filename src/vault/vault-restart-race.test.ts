import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isTerminalJobState } from '../domain/job-states.ts';
import type { Host, Job, Machine } from '../domain/model.ts';
import { createSparseImage } from '../storage/index.ts';
import { type Child, spawnTs } from '../testing/child-process.ts';
import { until as waitUntil } from '../testing/until.ts';

const FIXTURE = 'src/testing/restart-race.fixture.ts';
const children = new Set<Child>();
const dirs: string[] = [];
after(async () => {
  for (const child of children) child.process.kill('SIGKILL');
  await Promise.all([...children].map((c) => c.exited));
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

const until = <T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 60_000) =>
  waitUntil(what, probe, { timeoutMs, intervalMs: 50 });

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function start(args: string[], env: Record<string, string> = {}): Child {
  const child = spawnTs(FIXTURE, args, env);
  children.add(child);
  void child.exited.then(() => children.delete(child));
  return child;
}

async function kill(child: Child): Promise<void> {
  child.process.kill('SIGKILL');
  await child.exited;
}

interface Site {
  dir: string;
  controlPort: number;
  replicationPorts: Record<'primary' | 'recovery', number>;
  token: string;
  url: string;
  vault: Child;
  hosts: Child[];
}

function client(site: Site) {
  return async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const response = await fetch(`${site.url}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${site.token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json()) as T };
  };
}

function startHosts(site: Site, enrol?: Record<string, string>): Child[] {
  return (['primary', 'recovery'] as const).map((name) =>
    start([
      'host',
      join(site.dir, name),
      String(site.replicationPorts[name]),
      ...(enrol ? [site.url, enrol[name]!, name] : []),
    ]),
  );
}

/** A vault and two host processes, each in its own site; both hosts connected. */
async function startSite(env: Record<string, string>): Promise<Site> {
  const dir = await mkdtemp(join(tmpdir(), 'haven-race-'));
  dirs.push(dir);
  const controlPort = await freePort();
  const vault = start(['vault', dir, String(controlPort)], env);
  const { url } = await vault.firstJson<{ url: string }>();
  const token = (await readFile(join(dir, 'admin.token'), 'utf8')).trim();
  const site: Site = {
    dir,
    controlPort,
    replicationPorts: { primary: await freePort(), recovery: await freePort() },
    token,
    url,
    vault,
    hosts: [],
  };
  const api = client(site);
  const tokens: Record<string, string> = {};
  for (const name of ['primary', 'recovery']) {
    assert.equal((await api('POST', '/sites', { name, role: name })).status, 201);
    tokens[name] = (
      await api<{ token: string }>('POST', '/enrolment-tokens', { siteId: name, hostName: name })
    ).body.token;
  }
  site.hosts = startHosts(site, tokens);
  await Promise.all(site.hosts.map((h) => h.firstJson()));
  await hostsConnected(site);
  return site;
}

async function hostsConnected(site: Site): Promise<Host[]> {
  const api = client(site);
  return until('both hosts to be connected', async () => {
    const { body } = await api<{ hosts: Host[] }>('GET', '/hosts');
    return body.hosts.length === 2 &&
      body.hosts.every((h) => h.status === 'connected' && h.replicationFingerprint)
      ? body.hosts
      : undefined;
  });
}

/** Creates a machine whose initial copy takes a moment, and starts enable-replication. */
async function enableReplication(site: Site): Promise<{ machine: Machine; jobId: string }> {
  const api = client(site);
  const size = 64 << 20;
  const image = join(site.dir, 'primary', 'images', 'db-01.img');
  await mkdir(dirname(image), { recursive: true });
  await createSparseImage(image, size);
  const file = await open(image, 'r+');
  await file.write(randomBytes(size), 0, size, 0);
  await file.close();
  const created = await api<Machine>('POST', '/machines', {
    name: 'db-01',
    hostId: 'primary',
    disks: [{ id: 'disk0', sizeBytes: size, source: image }],
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const policy = (
    await api<{ policies: Array<{ id: string; builtIn: boolean }> }>('GET', '/policies')
  ).body.policies.find((p) => !p.builtIn)!;
  const job = await api<Job>('POST', `/machines/${created.body.id}/enable-replication`, {
    recoveryHostId: 'recovery',
    policyId: policy.id,
  });
  assert.equal(job.status, 202, JSON.stringify(job.body));
  return { machine: created.body, jobId: job.body.id };
}

/**
 * Kills the vault (SIGKILL) once the job has started replication, then the
 * hosts; starts the vault again, and the hosts only `hostsLateMs` later.
 */
async function crashAndComeBackLate(
  site: Site,
  jobId: string,
  hostsLateMs: number,
  env: Record<string, string>,
): Promise<void> {
  const api = client(site);
  await until('replication to start', async () => {
    const { body } = await api<Job>('GET', `/jobs/${jobId}`);
    assert.ok(!isTerminalJobState(body.state), `the job ended before the crash: ${JSON.stringify(body)}`);
    return body.steps.find((s) => s.name === 'start-replication')?.state === 'succeeded';
  });
  await kill(site.vault);
  for (const host of site.hosts) await kill(host);
  site.vault = start(['vault', site.dir, String(site.controlPort)], env);
  site.url = (await site.vault.firstJson<{ url: string }>()).url;
  await new Promise((r) => setTimeout(r, hostsLateMs));
  site.hosts = startHosts(site);
  await Promise.all(site.hosts.map((h) => h.firstJson()));
}

async function finished(site: Site, jobId: string): Promise<Job> {
  const api = client(site);
  return until(
    `job ${jobId} to end`,
    async () => {
      const { body } = await api<Job>('GET', `/jobs/${jobId}`);
      return isTerminalJobState(body.state) ? body : undefined;
    },
    120_000,
  );
}

/** What the primary host's agent has saved as running (it replays this after a restart). */
async function replicationsSaved(site: Site): Promise<string[]> {
  const state = JSON.parse(await readFile(join(site.dir, 'primary', 'data-path.json'), 'utf8')) as {
    replications: Array<{ machineId: string }>;
  };
  return state.replications.map((r) => r.machineId);
}

describe('vault restarted (SIGKILL) during enable-replication, hosts back later than the vault', () => {
  it('the resumed job waits for the hosts and succeeds when they return within the bound', async () => {
    const env = { HAVEN_TEST_HOST_WAIT_MS: '60000' };
    const site = await startSite(env);
    const { machine, jobId } = await enableReplication(site);
    await crashAndComeBackLate(site, jobId, 3000, env);
    const job = await finished(site, jobId);
    assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
    const after = (await client(site)<Machine>('GET', `/machines/${machine.id}`)).body;
    assert.equal(after.state, 'protected');
    assert.deepEqual(await replicationsSaved(site), [machine.id]);
  });

  it('a job that gives up on a host leaves no replication the vault does not show', async () => {
    const env = { HAVEN_TEST_HOST_WAIT_MS: '1500' };
    const site = await startSite(env);
    const { machine, jobId } = await enableReplication(site);
    await crashAndComeBackLate(site, jobId, 5000, env);
    const job = await finished(site, jobId);
    assert.equal(job.state, 'failed');
    assert.equal(job.error?.code, 'unreachable');
    const after = (await client(site)<Machine>('GET', `/machines/${machine.id}`)).body;
    assert.equal(after.state, 'unprotected');
    assert.equal(after.recoveryHostId, null);
    await hostsConnected(site);
    // The primary replayed its saved replication when it came back; the vault's desired state stops it.
    await until(
      'the primary to stop replicating the unprotected machine',
      async () => ((await replicationsSaved(site)).length === 0 ? true : undefined),
      20_000,
    );
  });
});
