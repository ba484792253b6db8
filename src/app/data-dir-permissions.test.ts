import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { isTerminalJobState } from '../domain/job-states.ts';
import type { Host, Job, Machine } from '../domain/model.ts';
import { lookupShareGroup, shareSocket } from '../storage/share-group.ts';
import { sqliteFile } from '../store/index.ts';
import { embeddedApi } from '../testing/embedded-api.ts';
import { until } from '../testing/until.ts';
import { type Embedded, startEmbedded } from './start-embedded.ts';

/**
 * A second local user, created for the test, tries to read everything a
 * running vault and its hosts keep: the database (TLS key, host credential
 * hashes), a backup, host identities, images, journals and the replica.
 */
const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const user = `haven-probe-${randomBytes(3).toString('hex')}`;
let userCreated = false;
let base: string;
let dataDir: string;
let up: Embedded | undefined;
const api = embeddedApi(() => up!);

async function finished(jobId: string): Promise<Job> {
  return until(
    `job ${jobId}`,
    async () => {
      const { body } = await api<Job>('GET', `/jobs/${jobId}`);
      return isTerminalJobState(body.state) ? body : undefined;
    },
    { timeoutMs: 120_000 },
  );
}

/** Every path below dir, with what lstat says about it. */
async function walk(dir: string): Promise<{ path: string; mode: number; kind: 'dir' | 'file' | 'other' }[]> {
  const found: { path: string; mode: number; kind: 'dir' | 'file' | 'other' }[] = [];
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    const s = await lstat(path);
    found.push({ path, mode: s.mode & 0o777, kind: s.isDirectory() ? 'dir' : s.isFile() ? 'file' : 'other' });
    if (s.isDirectory()) found.push(...(await walk(path)));
  }
  return found;
}

/** Runs `script` as the probe user with `input` on stdin; resolves with its stdout. */
function asProbeUser(script: string, input = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('runuser', ['-u', user, '--', 'sh', '-c', script], {
      cwd: '/',
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.on('error', reject);
    child.on('exit', () => resolve(out));
    child.stdin.end(input);
  });
}

before(async () => {
  if (!isRoot) return;
  await run('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', user]);
  userCreated = true;
  // Like a clone in a home folder other users may enter: only Haven's own modes protect its data.
  base = await mkdtemp(join(tmpdir(), 'haven-perm-'));
  await chmod(base, 0o755);
  dataDir = join(base, '.haven');
  // What an older version left: a world-readable folder and file, tightened at start.
  await mkdir(dataDir, { mode: 0o755 });
  await chmod(dataDir, 0o755);
  await writeFile(join(dataDir, 'old-backup.db'), 'secret', { mode: 0o644 });
  await chmod(join(dataDir, 'old-backup.db'), 0o644);
  up = await startEmbedded({ dataDir, port: 0, senderPollMs: 25, demo: false });
  await until(
    'both hosts to connect',
    async () => {
      const { body } = await api<{ hosts: Host[] }>('GET', '/hosts');
      return body.hosts.length === 2 && body.hosts.every((h) => h.replicationFingerprint);
    },
    { timeoutMs: 30_000 },
  );
});

after(async () => {
  await up?.stop();
  if (userCreated) await run('userdel', [user]).catch(() => {});
  if (base) await rm(base, { recursive: true, force: true });
});

describe('data directory permissions: another local user reads nothing', {
  skip: !isRoot && 'needs root (useradd)',
}, () => {
  it('database, backup, identities, images, journals and replica are 0600 in 0700 folders; the probe user reads none', async () => {
    const image = join(dataDir, 'images', 'web-01.img');
    const created = await api<Machine>('POST', '/machines', {
      name: 'web-01',
      hostId: 'primary',
      disks: [{ id: 'disk0', sizeBytes: 16 << 20, source: image }],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const enabled = await api<Job>('POST', `/machines/${created.body.id}/enable-replication`, {
      recoveryHostId: 'recovery',
      policyId: 'default',
    });
    assert.equal(enabled.status, 202, JSON.stringify(enabled.body));
    assert.equal((await finished(enabled.body.id)).state, 'succeeded');
    const machine = (await api<Machine>('GET', `/machines/${created.body.id}`)).body;
    // Guest-like writes through the disk service: journal records, then replica segments.
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 1M', '-c', 'flush', machine.disks[0]!.nbdUri!]);
    const backup = await api<Job>('POST', '/vault/backup', { file: 'vault-backup.db' });
    assert.equal(backup.status, 202, JSON.stringify(backup.body));
    assert.equal((await finished(backup.body.id)).state, 'succeeded');

    const entries = await walk(dataDir);
    const files = entries.filter((e) => e.kind === 'file').map((e) => e.path);
    const rel = (path: string) => path.slice(dataDir.length + 1);
    for (const wanted of [
      /^old-backup\.db$/,
      /^haven\.db$/,
      /^haven\.db-wal$/,
      /^backups\/vault-backup\.db$/,
      /^admin\.token$/,
      /^hosts\/primary\/host\.json$/,
      /^hosts\/recovery\/replication-identity\.json$/,
      /^images\/web-01\.img$/,
      /^hosts\/primary\/journals\/.+/,
      /^hosts\/recovery\/replica\/.+\/segments\/.+/,
    ]) {
      assert.ok(
        files.some((f) => wanted.test(rel(f))),
        `no file matches ${wanted}:\n${files.map(rel).join('\n')}`,
      );
    }
    // The probe user: nothing below the data directory is readable, nothing listable.
    const readable = await asProbeUser(
      'while IFS= read -r f; do head -c1 -- "$f" >/dev/null 2>&1 && echo "$f"; done',
      `${files.join('\n')}\n`,
    );
    assert.equal(readable, '', `readable by ${user}:\n${readable}`);
    const listed = await asProbeUser(`find ${dataDir} -readable`);
    assert.equal(listed, '', `find -readable as ${user}:\n${listed}`);
    assert.equal(sqliteFile(dataDir), join(dataDir, 'haven.db'));
    assert.equal((await stat(dataDir)).mode & 0o777, 0o700, 'the data directory');
    const loose = entries.filter((e) =>
      e.kind === 'dir' ? e.mode !== 0o700 : e.kind === 'file' ? e.mode !== 0o600 : (e.mode & 0o077) !== 0,
    );
    assert.deepEqual(
      loose.map((e) => `${rel(e.path)} ${e.mode.toString(8)}`),
      [],
      'files 0600, folders 0700, sockets owner only',
    );

    // The probe itself works: the user reads what is meant for everyone.
    assert.notEqual(await asProbeUser('head -c1 /etc/passwd'), '');
  });

  it('--share-group: a member of the group (the hypervisor) connects to a shared socket and still reads no file', async () => {
    const group = `haven-share-${randomBytes(3).toString('hex')}`;
    await run('groupadd', [group]);
    try {
      await run('usermod', ['-a', '-G', group, user]);
      const root = join(base, 'shared-host');
      const socket = join(root, 'run', 'disks.sock');
      await mkdir(join(root, 'run'), { recursive: true, mode: 0o700 });
      await writeFile(join(root, 'host.json'), 'secret', { mode: 0o600 });
      const server = createServer((c) => c.end('nbd'));
      await new Promise<void>((resolve) => server.listen(socket, resolve));
      try {
        await shareSocket(socket, root, await lookupShareGroup(group));
        const connect = `python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.connect('${socket}'); print(s.recv(3).decode())"`;
        assert.equal((await asProbeUser(connect)).trim(), 'nbd', 'the group member connects');
        assert.equal(
          await asProbeUser(`head -c1 ${join(root, 'host.json')} 2>/dev/null; ls ${root} 2>/dev/null`),
          '',
        );
        assert.equal((await stat(socket)).mode & 0o777, 0o660);
        assert.equal((await stat(root)).mode & 0o777, 0o710);
      } finally {
        server.close();
      }
      await assert.rejects(lookupShareGroup(`${group}-none`), /does not exist/);
    } finally {
      await run('groupdel', [group]).catch(() => {});
    }
  });
});
