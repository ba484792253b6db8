import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Host, Job, Machine } from '../domain/model.ts';
import { freePort, REPO_ROOT, runHaven } from '../testing/child-process.ts';

let dataDir: string;
let url: string;
let up: ReturnType<typeof spawn>;
const conn = () => ['--data', dataDir];

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'haven-cli-'));
  const port = await freePort();
  // Exactly what the README says, with a private data dir and port: npm start runs `haven up`.
  up = spawn('npm', ['start', '--', '--data', dataDir, '--port', String(port)], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  up.stdout!.on('data', (d) => {
    out += d;
  });
  up.stderr!.on('data', (d) => {
    out += d;
  });
  const end = Date.now() + 60_000;
  while (!/Haven .* is up/.test(out)) {
    if (Date.now() > end || up.exitCode !== null) throw new Error(`haven up did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  url = `http://127.0.0.1:${port}`;
});

after(async () => {
  // npm runs node as a child: stop the whole process group.
  if (up.pid) process.kill(-up.pid, 'SIGTERM');
  await new Promise((r) => up.once('exit', r));
  await rm(dataDir, { recursive: true, force: true });
});

describe('npm start (haven up)', () => {
  it('answers GET /api/v1/health', async () => {
    const response = await fetch(`${url}/api/v1/health`);
    assert.equal(response.status, 200);
    assert.equal(((await response.json()) as { status: string }).status, 'ok');
  });

  it('has two registered, connected hosts: primary and recovery', async () => {
    const token = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim();
    assert.match(token, /^hvn_/);
    const hosts = await (async () => {
      for (let i = 0; i < 100; i++) {
        const r = await runHaven(['hosts', 'list', '--json', ...conn()]);
        const list = JSON.parse(r.stdout) as Host[];
        if (list.length === 2 && list.every((h) => h.status === 'connected')) return list;
        await new Promise((res) => setTimeout(res, 100));
      }
      throw new Error('hosts did not connect');
    })();
    assert.deepEqual(hosts.map((h) => h.name).sort(), ['primary', 'recovery']);
    const table = await runHaven(['hosts', 'list', ...conn()]);
    assert.match(table.stdout, /^Name\s+Site\s+Status\s+Last heartbeat\s+Version$/m);
    assert.match(table.stdout, /^primary\s+\S+\s+connected\s+(just now|\d+ s ago)\s/m);
  });
});

describe('haven CLI', () => {
  it('lists its commands and refuses unknown ones with exit code 2', async () => {
    const help = await runHaven(['help']);
    assert.equal(help.code, 0);
    for (const command of [
      'up',
      'vault backup',
      'machines list',
      'jobs watch',
      'failover',
      'complete-failover',
    ]) {
      assert.match(help.stdout, new RegExp(`haven ${command} `), command);
    }
    const unknown = await runHaven(['frobnicate']);
    assert.equal(unknown.code, 2);
    const badFlag = await runHaven(['machines', 'list', '--no-such-flag', ...conn()]);
    assert.equal(badFlag.code, 2);
    assert.match(badFlag.stderr, /no-such-flag/);
  });

  it('creates and shows machines, as a table and as JSON', async () => {
    const created = await runHaven([
      'machines',
      'create',
      'web-01',
      '--host',
      'primary',
      '--disk',
      `disk0:1073741824:${join(dataDir, 'images', 'web-01.img')}`,
      '--json',
      ...conn(),
    ]);
    assert.equal(created.code, 0, created.stderr);
    const hostsOut = JSON.parse((await runHaven(['hosts', 'list', '--json', ...conn()])).stdout) as Host[];
    const primary = hostsOut.find((h) => h.name === 'primary')!;
    const machine = JSON.parse(created.stdout) as Machine;
    assert.equal(machine.state, 'unprotected');
    assert.equal(machine.activeHostId, primary.id);
    const table = await runHaven(['machines', 'list', ...conn()]);
    assert.match(table.stdout, /^Name\s+State\s+Health\s+Host\s+RPO$/m);
    // Names, not ids: the host by its name; the machine's id only with --wide.
    assert.match(table.stdout, /^web-01\s+unprotected\s+\S+\s+primary\b/m);
    assert.ok(!table.stdout.includes(machine.id) && !table.stdout.includes(primary.id), table.stdout);
    const wide = await runHaven(['machines', 'list', '--wide', ...conn()]);
    assert.match(wide.stdout, /^Name\s+State\s+Health\s+Host\s+RPO\s+Id$/m);
    assert.ok(wide.stdout.includes(machine.id));
    // List filters take names and short ids as well as ids (the API's filters take ids).
    for (const host of ['primary', primary.id, primary.id.slice(0, 8)]) {
      const filtered = await runHaven(['machines', 'list', '--host', host, '--json', ...conn()]);
      assert.equal(filtered.code, 0, filtered.stderr);
      assert.ok(
        (JSON.parse(filtered.stdout) as Machine[]).some((m) => m.id === machine.id),
        host,
      );
    }
    const elsewhere = await runHaven(['machines', 'list', '--host', 'recovery', '--json', ...conn()]);
    assert.ok(!(JSON.parse(elsewhere.stdout) as Machine[]).some((m) => m.id === machine.id));
    const noSuchHost = await runHaven(['machines', 'list', '--host', 'nowhere', ...conn()]);
    assert.equal(noSuchHost.code, 1);
    assert.match(
      noSuchHost.stderr,
      /host 'nowhere' does not exist \(there are (primary, recovery|recovery, primary)\)/,
    );
    const summary = await runHaven(['machines', 'show', machine.id.slice(0, 8), ...conn()]);
    assert.equal(summary.code, 0, summary.stderr);
    assert.match(summary.stdout, /^Machine: +web-01$/m);
    assert.match(summary.stdout, /^Runs on: +primary$/m);
    assert.match(summary.stdout, /^Protected to: +not protected$/m);
    assert.match(summary.stdout, /^Disks: +disk0 1\.0 GiB /m);
    assert.match(summary.stdout, /^Allowed: +enable-replication/m);
    assert.ok(!summary.stdout.includes('{'), 'no JSON in the summary');
    const shown = JSON.parse(
      (await runHaven(['machines', 'show', 'web-01', '--json', ...conn()])).stdout,
    ) as Machine;
    assert.equal(shown.id, machine.id);
  });

  it('reports a refused lifecycle operation with the state and allowed operations, exit code 1', async () => {
    const result = await runHaven(['failover', 'web-01', '--point', 'latest', ...conn()]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /Machine 'web-01' is unprotected: failover is not allowed there; allowed: enable-replication/,
    );
    const json = await runHaven(['commit', 'web-01', '--json', ...conn()]);
    assert.equal(json.code, 1);
    const body = JSON.parse(json.stdout) as { error: { code: string; details: { state: string } } };
    assert.equal(body.error.code, 'operation_not_allowed');
    assert.equal(body.error.details.state, 'unprotected');
  });

  it('shows a machine’s replication history, its range and resolution in units', async () => {
    const empty = await runHaven(['machines', 'history', 'web-01', ...conn()]);
    assert.equal(empty.code, 0, empty.stderr);
    assert.match(
      empty.stdout,
      /^no replication figures since .+: they are kept while the machine replicates$/m,
    );
    const week = await runHaven(['machines', 'history', 'web-01', '--since', '7d', '--json', ...conn()]);
    assert.equal(week.code, 0, week.stderr);
    const body = JSON.parse(week.stdout) as { resolutionSeconds: number; since: string; samples: unknown[] };
    assert.equal(body.resolutionSeconds, 600, 'the finest tier kept a week back');
    assert.ok(Math.abs(Date.parse(body.since) - (Date.now() - 7 * 86_400_000)) < 60_000);
    const minutes = await runHaven([
      'machines',
      'history',
      'web-01',
      '--resolution',
      '1m',
      '--json',
      ...conn(),
    ]);
    assert.equal((JSON.parse(minutes.stdout) as { resolutionSeconds: number }).resolutionSeconds, 60);
    const odd = await runHaven(['machines', 'history', 'web-01', '--resolution', '30s', ...conn()]);
    assert.equal(odd.code, 2);
    assert.match(odd.stderr, /--resolution: '30s' is not kept; the vault keeps 10 s, 1 min, 10 min/);
    const badSince = await runHaven(['machines', 'history', 'web-01', '--since', 'yesterday', ...conn()]);
    assert.equal(badSince.code, 2);
    assert.match(badSince.stderr, /--since: 'yesterday' is not a duration/);
  });

  it('follows a job to its end with plain progress lines when not on a terminal', async () => {
    const token = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim();
    const response = await fetch(`${url}/api/v1/vault/backup`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    const job = (await response.json()) as Job;
    // The short id the CLI prints is accepted back.
    const watched = await runHaven(['jobs', 'watch', job.id.slice(0, 8), ...conn()]);
    assert.equal(watched.code, 0, watched.stderr);
    assert.ok(!watched.stdout.includes('\u001b['), 'no terminal escapes in a pipe');
    assert.match(watched.stdout, /vault-backup \w+ +succeeded/);
    assert.match(watched.stdout, /Verify the backup +succeeded/);
    const listed = JSON.parse((await runHaven(['jobs', 'list', '--json', ...conn()])).stdout) as Job[];
    assert.ok(listed.some((j) => j.id === job.id && j.state === 'succeeded'));
    // A job list filtered by a machine's name: the vault's backup job targets the vault, not it.
    const ofMachine = await runHaven(['jobs', 'list', '--machine', 'web-01', '--json', ...conn()]);
    assert.equal(ofMachine.code, 0, ofMachine.stderr);
    assert.ok(!(JSON.parse(ofMachine.stdout) as Job[]).some((j) => j.id === job.id));
    const noSuchPlan = await runHaven(['jobs', 'list', '--plan', 'no-such-plan', ...conn()]);
    assert.equal(noSuchPlan.code, 1);
    assert.match(noSuchPlan.stderr, /plan 'no-such-plan' does not exist \(there are none\)/);
    const table = await runHaven(['jobs', 'list', ...conn()]);
    assert.match(table.stdout, /^Id\s+Kind\s+Target\s+State\s+Progress\s+By\s+Created$/m);
    assert.match(
      table.stdout,
      new RegExp(`^${job.id.slice(0, 8)}\\s+vault-backup\\s+vault\\s+succeeded\\s+100%`, 'm'),
    );
    const shown = await runHaven(['jobs', 'show', job.id.slice(0, 8), ...conn()]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^Job: +Vault backup \w+$/m);
    assert.match(shown.stdout, /^Kind: +vault-backup$/m);
    assert.match(shown.stdout, /^#\s+Step\s+State\s+Progress\s+Took\s+Message$/m);
    // Each step's output under its title, in words: sizes with units, nested facts indented, no JSON.
    assert.match(
      shown.stdout,
      /^1\. Write a consistent copy of the vault state:\n {2}File: \/.+\n {2}Bytes: [\d.]+ (KiB|MiB)$/m,
    );
    assert.match(shown.stdout, /^2\. Verify the backup:\n {2}Verified:\n {4}\w+: /m);
    assert.doesNotMatch(shown.stdout, /[{}"]/);
  });

  it('manages tokens and policies', async () => {
    const viewer = await runHaven(['tokens', 'create', 'auditor', '--role', 'viewer', ...conn()]);
    assert.equal(viewer.code, 0);
    const token = viewer.stdout.trim();
    const createP1 = ['policies', 'create', 'p1', '--rpo', '5m', '--retention', '2h'];
    const denied = await runHaven([...createP1, '--token', token, '--url', url]);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /role viewer/);
    const made = await runHaven([...createP1, '--app-consistent', '1h', '--json', ...conn()]);
    assert.equal(made.code, 0, made.stderr);
    assert.equal(JSON.parse(made.stdout).rpoThresholdSeconds, 300);
    // Durations as the tables print them are read back.
    const printed = await runHaven([
      'policies',
      'create',
      'p2',
      '--rpo',
      '90',
      '--retention',
      '1 h 30 min',
      '--json',
      ...conn(),
    ]);
    assert.equal(printed.code, 0, printed.stderr);
    assert.equal(JSON.parse(printed.stdout).rpoThresholdSeconds, 90);
    assert.equal(JSON.parse(printed.stdout).retentionSeconds, 5400);
    const builtIn = await runHaven(['policies', 'update', 'automatic-failback', '--rpo', '1m', ...conn()]);
    assert.equal(builtIn.code, 1);
  });
});
