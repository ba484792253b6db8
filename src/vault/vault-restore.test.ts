import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Alert, Host, Job } from '../domain/model.ts';
import { type Child, freePort, runHaven, spawnTs } from '../testing/child-process.ts';
import { until as waitUntil } from '../testing/until.ts';

const CLI = 'src/cli/main.ts';
const dirs: string[] = [];
const children: Child[] = [];
after(async () => {
  for (const child of children) {
    child.process.kill('SIGKILL');
    await child.exited;
  }
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'haven-restore-'));
  dirs.push(dir);
  return dir;
}

function start(args: string[]): Child {
  const child = spawnTs(CLI, args);
  children.push(child);
  return child;
}

const until = <T>(what: string, probe: () => Promise<T | false>) =>
  waitUntil(what, async () => probe().catch(() => false as const), { timeoutMs: 20_000, intervalMs: 100 });

async function haven<T>(args: string[]): Promise<T> {
  const result = await runHaven([...args, '--json']);
  assert.equal(result.code, 0, `haven ${args.join(' ')}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

describe('vault backup and restore', () => {
  it('restores into a fresh data directory at the same address; the host reconnects without re-enrolling', async () => {
    const vaultDir = await tempDir();
    const hostDir = await tempDir();
    const port = await freePort();
    const controlPort = await freePort();
    const vaultArgs = (dir: string) => [
      'vault',
      '--data',
      dir,
      '--port',
      String(port),
      '--control-port',
      String(controlPort),
      '--heartbeat-interval',
      '200ms',
    ];
    const conn = (dir: string) => ['--data', dir];

    const first = start(vaultArgs(vaultDir));
    const { url } = await first.firstJson<{ url: string }>();
    await haven(['sites', 'create', 'dc1', '--role', 'primary', ...conn(vaultDir)]);
    const { token } = await haven<{ token: string }>([
      'hosts',
      'enrolment-token',
      '--site',
      'dc1',
      '--name',
      'kvm-1',
      ...conn(vaultDir),
    ]);
    const host = start([
      'host',
      '--data',
      hostDir,
      '--vault',
      url,
      '--token',
      token,
      '--name',
      'kvm-1',
      '--site',
      'dc1',
      '--replication-listen',
      '127.0.0.1:0',
    ]);
    await host.firstJson();
    await until('the host to connect', async () => {
      const hosts = await haven<Host[]>(['hosts', 'list', ...conn(vaultDir)]);
      return hosts[0]?.status === 'connected' ? hosts : false;
    });

    // A job to find again after the restore, then an online backup while the vault runs.
    const backupJob = await haven<Job>(['jobs', 'list', ...conn(vaultDir)]);
    assert.deepEqual(backupJob, []);
    const file = join(await tempDir(), 'vault.backup');
    const viaApi = await fetch(`${url}/api/v1/vault/backup`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${(await import('node:fs')).readFileSync(join(vaultDir, 'admin.token'), 'utf8').trim()}`,
        'content-type': 'application/json',
      },
      body: '{}',
    });
    assert.equal(viaApi.status, 202);
    const jobId = ((await viaApi.json()) as Job).id;
    await until('the backup job', async () => {
      const job = await haven<Job>(['jobs', 'show', jobId, ...conn(vaultDir)]);
      return job.state === 'succeeded' ? job : false;
    });
    const backup = await runHaven(['vault', 'backup', '--out', file, ...conn(vaultDir)]);
    assert.equal(backup.code, 0, backup.stderr);

    // The vault's machine is lost.
    first.process.kill('SIGKILL');
    await first.exited;
    const restoredDir = await tempDir();
    const restore = await runHaven(['vault', 'restore', file, '--data', restoredDir]);
    assert.equal(restore.code, 0, restore.stderr);
    const refused = await runHaven(['vault', 'restore', file, '--data', restoredDir]);
    assert.equal(refused.code, 1, 'restoring over an existing vault needs --force');
    assert.match(refused.stderr, /already holds a vault/);

    const second = start(vaultArgs(restoredDir));
    await second.firstJson();
    // The admin token of the old vault still works: it is part of the restored state.
    const token2 = (await import('node:fs')).readFileSync(join(vaultDir, 'admin.token'), 'utf8').trim();
    const restoredConn = ['--url', url, '--token', token2];
    const since = new Date().toISOString();
    const hosts = await until('the host to reconnect to the restored vault', async () => {
      const list = await haven<Host[]>(['hosts', 'list', ...restoredConn]);
      return list[0]?.status === 'connected' && (list[0].lastHeartbeatAt ?? '') > since ? list : false;
    });
    assert.equal(hosts.length, 1);
    assert.equal(hosts[0]!.name, 'kvm-1');
    const jobs = await haven<Job[]>(['jobs', 'list', ...restoredConn]);
    assert.ok(
      jobs.some((j) => j.id === jobId && j.state === 'succeeded'),
      'jobs from before the backup are listed',
    );

    // Missed heartbeats make the host unreachable and raise an alert; it clears when the host returns.
    host.process.kill('SIGKILL');
    await host.exited;
    const alert = await until('an unreachable alert', async () => {
      const alerts = await haven<Alert[]>(['alerts', 'list', '--open', ...restoredConn]);
      return alerts.find((a) => a.key === `host-unreachable:${hosts[0]!.id}`) ?? false;
    });
    assert.equal(alert.severity, 'critical');
    assert.match(alert.message, /kvm-1.*unreachable/);
    assert.equal((await haven<Host>(['hosts', 'show', 'kvm-1', ...restoredConn])).status, 'unreachable');

    const back = start(['host', '--data', hostDir, '--replication-listen', '127.0.0.1:0']);
    await back.firstJson();
    await until('the alert to clear', async () => {
      const open = await haven<Alert[]>(['alerts', 'list', '--open', ...restoredConn]);
      return open.length === 0;
    });
    assert.equal((await haven<Host>(['hosts', 'show', 'kvm-1', ...restoredConn])).status, 'connected');
  });
});
