import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { DEMO_MACHINE } from '../../app/demo-machine.ts';
import type { DrillRun } from '../../domain/drill.ts';
import { isTerminalJobState } from '../../domain/job-states.ts';
import type { Job, Machine, RecoveryPoint } from '../../domain/model.ts';
import { findQemuProcesses, kill, waitForExit } from '../../hypervisor/qemu-process.ts';
import { collectOutput, freePort, REPO_ROOT } from '../../testing/child-process.ts';
import { type GroupProcess, interruptGroup } from '../../testing/process-group.ts';
import { until as waitUntil } from '../../testing/until.ts';

/**
 * A vault killed with SIGKILL in the middle of a drill, as an operator meets
 * it: `haven up` as a real process (its vault and both host agents die with
 * it; QEMU is daemonized and survives), started again on the same data. The
 * drill must end interrupted, never passed, and be cleaned up: its drill
 * machine gone from the recovery host, its overlay closed and discarded, while
 * production keeps being protected and replicating.
 */
const run = promisify(execFile);
const until = <T>(what: string, probe: () => Promise<T | undefined | false | null>, timeoutMs = 120_000) =>
  waitUntil(what, probe, { timeoutMs, intervalMs: 250 });

let dir: string;
let port: number;
let controlPort: number;
let token: string;
let haven: GroupProcess | null = null;

/** `haven up` in its own process group (like a terminal's job), on this test's data and ports. */
async function havenUp(): Promise<void> {
  const env = { ...process.env };
  delete env.HAVEN_URL;
  delete env.HAVEN_TOKEN;
  delete env.HAVEN_DATABASE_URL;
  const child = spawn(
    join(REPO_ROOT, 'bin/haven'),
    ['up', '--data', dir, '--port', String(port), '--control-port', String(controlPort)],
    { cwd: REPO_ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const { output, exited } = collectOutput(child);
  haven = { child, output, exited };
  let code: number | null | undefined;
  void exited.then((c) => {
    code = c;
  });
  await until('haven up to come up', async () => output().includes('is up.') || code !== undefined).catch(
    (error: Error) => assert.fail(`${error.message}:\n${output()}`),
  );
  assert.ok(output().includes('is up.'), `haven up exited with ${code}:\n${output()}`);
  token = (await readFile(join(dir, 'admin.token'), 'utf8')).trim();
}

async function api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const response = await fetch(`http://127.0.0.1:${port}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json().catch(() => null)) as T };
}

async function get<T>(path: string): Promise<T> {
  const answer = await api<T>('GET', path);
  assert.equal(answer.status, 200, `GET ${path}: ${JSON.stringify(answer.body)}`);
  return answer.body;
}

async function jobEnded(id: string, timeoutMs = 180_000): Promise<Job> {
  return until(
    `job ${id} to end`,
    async () => {
      const job = await get<Job>(`/jobs/${id}`);
      return isTerminalJobState(job.state) ? job : undefined;
    },
    timeoutMs,
  );
}

/** The recovery host's hypervisor inventory, as the vault asks it. */
async function recoveryDomains(): Promise<Array<{ name: string; state: string }>> {
  return (await get<{ domains: Array<{ name: string; state: string }> }>('/hosts/recovery/domains')).domains;
}

/** Files under the data directory whose path names the drill's overlay. */
async function overlayFiles(viewId: string): Promise<string[]> {
  const { stdout } = await run('find', [dir, '-path', `*${viewId}*`]);
  return stdout.split('\n').filter((l) => l !== '');
}

let machine: Machine;
let drill: DrillRun;
let jobId: string;
let restartedAt: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-drill-crash-'));
  port = await freePort();
  controlPort = await freePort();
  await havenUp();
});

after(async () => {
  const running = haven;
  haven = null;
  if (running) {
    await interruptGroup(running).catch(() => {
      try {
        process.kill(-running.child.pid!, 'SIGKILL');
      } catch {}
    });
  }
  // QEMU is daemonized: whatever the test's data directory still runs is ended here.
  for (const pid of await findQemuProcesses(dir)) {
    kill(pid, 'SIGKILL');
    await waitForExit(pid, 10_000);
  }
  await rm(dir, { recursive: true, force: true });
});

describe('a vault killed with SIGKILL in the middle of a drill', { timeout: 600_000 }, () => {
  it('the demo machine is protected through the API and has a crash-consistent point', async () => {
    machine = (await get<{ machines: Machine[] }>('/machines')).machines.find(
      (m) => m.name === DEMO_MACHINE,
    )!;
    assert.ok(machine, 'haven up made its demo machine');
    const started = await api<Job>('POST', `/machines/${machine.id}/enable-replication`, {
      recoveryHostId: 'recovery',
      policyId: 'default',
    });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const job = await jobEnded(started.body.id);
    assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
    await until('a crash-consistent point', async () =>
      (
        await get<{ recoveryPoints: RecoveryPoint[] }>(`/machines/${machine.id}/recovery-points`)
      ).recoveryPoints.some((p) => p.processed && p.type === 'crash-consistent'),
    );
  });

  it('a drill started through the API runs its machine on the test network from its overlay', async () => {
    const started = await api<{ drill: DrillRun; job: Job }>('POST', `/machines/${machine.id}/drills`, {
      point: 'latest-crash-consistent',
      timeLimitSeconds: 900,
      // A pattern the guest never prints: the drill waits in its boot check until the vault dies.
      checks: {
        filesystems: false,
        script: null,
        boot: { consolePattern: 'never-printed', timeoutSeconds: 600 },
      },
    });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    jobId = started.body.job.id;
    drill = await until('the drill machine to be started', async () => {
      const d = await get<DrillRun>(`/drills/${started.body.drill.id}`);
      const job = await get<Job>(`/jobs/${jobId}`);
      const boot = job.steps.find((s) => s.name === 'boot');
      return d.machines[0]?.copy && boot?.state === 'running' && /started on/.test(boot.message ?? '')
        ? d
        : undefined;
    });
    const copy = drill.machines[0]!.copy!;
    assert.deepEqual(
      (await recoveryDomains()).filter((d) => d.name === copy.vmName).map((d) => d.state),
      ['running'],
    );
    assert.equal((await findQemuProcesses(copy.vmName)).length, 1, 'one QEMU process runs the drill copy');
    assert.ok((await overlayFiles(copy.viewId)).length > 0, 'the overlay is on the recovery host');
  });

  it('kill -9 of haven up: the drill machine outlives it (QEMU is daemonized)', async () => {
    const running = haven!;
    haven = null;
    process.kill(running.child.pid!, 'SIGKILL');
    await running.exited;
    // The group's other processes (if any) die too, as when a machine loses power under the vault.
    try {
      process.kill(-running.child.pid!, 'SIGKILL');
    } catch {}
    assert.equal((await findQemuProcesses(drill.machines[0]!.copy!.vmName)).length, 1);
  });

  it('haven up again on the same data: the drill ends interrupted and cleaned up', async () => {
    restartedAt = new Date().toISOString();
    await havenUp();
    const copy = drill.machines[0]!.copy!;
    const ended = await until('the drill to end cleaned up', async () => {
      const d = await get<DrillRun>(`/drills/${drill.id}`);
      return d.endedAt !== null && d.machines.every((m) => m.cleanedUp) ? d : undefined;
    });
    assert.equal(ended.state, 'interrupted', `${ended.state}: ${ended.reason}`);
    // Removed by the drill's own job once the recovery host reconnected, not left to a later retry.
    assert.equal(ended.reason, 'the vault restarted during the drill; its machine and overlay were removed');
    assert.deepEqual(
      ended.machines[0]!.checks.filter((c) => c.result === 'passed'),
      [],
      'nothing counts as proof',
    );
    // The drill machine is gone: no QEMU process, and the recovery host's hypervisor does not know it.
    assert.deepEqual(await findQemuProcesses(copy.vmName), []);
    assert.deepEqual(
      (await recoveryDomains()).filter((d) => d.name === copy.vmName),
      [],
    );
    // The overlay is closed and its writes discarded at the recovery host.
    assert.deepEqual(await overlayFiles(copy.viewId), []);
    const proof = await get<{ lastProven: unknown }>(`/machines/${machine.id}/proof`);
    assert.equal(proof.lastProven, null, JSON.stringify(proof));
  });

  it("the drill's job says what happened", async () => {
    const job = await jobEnded(jobId);
    assert.equal(job.state, 'failed');
    assert.equal(
      job.error?.message,
      `drill ${drill.id.slice(0, 8)}: the vault restarted during the drill; its machine and overlay were removed`,
    );
    // The step the vault died in is the one that ended it; nothing after it ran.
    assert.deepEqual(
      job.steps.map((s) => [s.name, s.state]),
      [
        ['choose-point', 'succeeded'],
        ['boot', 'failed'],
        ['clean-up', 'skipped'],
      ],
    );
  });

  it('production is still protected, running and replicating after the restart', async () => {
    const shown = await get<Machine>(`/machines/${machine.id}`);
    assert.equal(shown.state, 'protected');
    assert.match(haven!.output(), /demo: +demo-01 \(running on primary, protected\)/);
    await until('a recovery point made after the restart', async () =>
      (
        await get<{ recoveryPoints: RecoveryPoint[] }>(`/machines/${machine.id}/recovery-points`)
      ).recoveryPoints.some((p) => p.time > restartedAt),
    );
  });
});
