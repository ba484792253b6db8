/**
 * `haven view` and `haven export` against a real vault with two hosts (in
 * process) and a replicated machine: stock nbdinfo and qemu-img read the
 * view with its key and are refused without it; exports to raw and qcow2
 * equal the point (qemu-img compare against the view on the host's socket).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Embedded, embeddedHostOptions, startEmbedded } from '../../app/start-embedded.ts';
import { startVault } from '../../app/start-vault.ts';
import type { AccessView, Machine, RecoveryPoint } from '../../domain/model.ts';
import { startHost } from '../../host/start-host.ts';
import { qemuImgArgs } from '../../nbd/psk-access.ts';
import { createSparseImage } from '../../storage/index.ts';
import { NODE, REPO_ROOT, runHaven } from '../../testing/child-process.ts';
import { embeddedApi, embeddedCliConnection, runOperation } from '../../testing/embedded-api.ts';
import { run, runOk } from '../../testing/nbd-test-fixture.ts';
import { qemuIoFlushed } from '../../testing/qemu-io.ts';
import { until } from '../../testing/until.ts';
import type { OpenedAccessView } from '../../vault/point-access.ts';
import { pointLabel } from '../resolve-ref.ts';
import { VIEW_ENDED_UNDER_IT } from './view-commands.ts';

const SIZE = 16 << 20;
let dir: string;
let up: Embedded;
let machine: Machine;
let point: RecoveryPoint;
const api = embeddedApi(() => up);
const conn = () => embeddedCliConnection(up);

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-view-cli-'));
  up = await startEmbedded({ dataDir: dir, port: 0, senderPollMs: 25, monitorIntervalMs: 200, demo: false });
  await until('both hosts connected', async () => {
    const { body } = await api<{ hosts: { status: string; replicationFingerprint: string | null }[] }>(
      'GET',
      '/hosts',
    );
    return (
      body.hosts.length === 2 && body.hosts.every((h) => h.status === 'connected' && h.replicationFingerprint)
    );
  });
  const image = join(dir, 'images', 'files-01.img');
  await mkdir(join(dir, 'images'), { recursive: true });
  await createSparseImage(image, SIZE);
  const file = await open(image, 'r+');
  await file.write(randomBytes(1 << 20), 0, 1 << 20, 2 << 20);
  await file.close();
  const created = await api<Machine>('POST', '/machines', {
    name: 'files-01',
    hostId: 'primary',
    disks: [{ id: 'disk0', sizeBytes: SIZE, source: image }],
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await runOperation(
    api,
    created.body.id,
    'enable-replication',
    { recoveryHostId: 'recovery', policyId: 'default' },
    120_000,
  );
  machine = (await api<Machine>('GET', `/machines/${created.body.id}`)).body;
  await qemuIoFlushed(machine.disks[0]!.nbdUri!, 'write -P 0x5a 9M 512k');
  point = await until(
    'a point with the writes',
    async () => {
      const m = (await api<Machine>('GET', `/machines/${machine.id}`)).body;
      const { body } = await api<{ recoveryPoints: RecoveryPoint[] }>(
        'GET',
        `/machines/${machine.id}/recovery-points`,
      );
      const latest = body.recoveryPoints.reduce<RecoveryPoint | undefined>(
        (a, b) => (a === undefined || b.sequence > a.sequence ? b : a),
        undefined,
      );
      return m.replication?.pendingBytes === 0 && body.recoveryPoints.length >= 2 ? latest : undefined;
    },
    { timeoutMs: 60_000 },
  );
});

after(async () => {
  await up?.stop();
  await rm(dir, { recursive: true, force: true });
});

/**
 * `haven view --json` running in the background: its first line is the
 * opened view, its last the typed reason it ended with.
 */
function viewInBackground(extra: string[] = []) {
  const child = spawn(
    NODE,
    // The point as `haven machines points` prints it, not its full id.
    ['src/cli/main.ts', 'view', 'files-01', '--point', pointLabel(point), '--json', ...extra, ...conn()],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const jsonLines = () => out.split('\n').filter((l) => l.startsWith('{'));
  return {
    child,
    exited,
    output: () => out,
    opened: () =>
      until(
        'the view to open',
        async () => {
          const line = jsonLines()[0];
          return line === undefined
            ? undefined
            : (JSON.parse(line) as OpenedAccessView & { pskFile: string });
        },
        { timeoutMs: 30_000 },
      ),
    ended: () => JSON.parse(jsonLines().at(-1)!) as Pick<AccessView, 'id' | 'closedReason'>,
  };
}

/** A second view of the point, read on the recovery host's socket: what the exports are compared with. */
async function referenceView(): Promise<OpenedAccessView> {
  const opened = await api<{ view: OpenedAccessView }>('POST', `/machines/${machine.id}/views`, {
    recoveryPoint: { option: 'custom', pointId: point.id },
  });
  assert.equal(opened.status, 201, JSON.stringify(opened.body));
  return opened.body.view;
}

describe('point-in-time access', () => {
  it('a viewer may list views but not open one', async () => {
    const token = await api<{ token: string }>('POST', '/tokens', { name: 'looker', role: 'viewer' });
    assert.equal(token.status, 201);
    const refused = await up.vault.app.request(`/api/v1/machines/${machine.id}/views`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token.body.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ recoveryPoint: { option: 'latest' } }),
    });
    assert.equal(refused.status, 403);
    const cli = await runHaven([
      'view',
      'files-01',
      '--url',
      up.vault.url,
      '--token',
      token.body.token,
      ...(up.vault.apiFingerprint ? ['--fingerprint', up.vault.apiFingerprint] : []),
    ]);
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /operator|role|forbidden/i);
  });

  it('haven view prints URIs nbdinfo and qemu-img read with the key it wrote; without it they are refused; Ctrl-C closes the view', async () => {
    const { child, exited, output, opened, ended } = viewInBackground();
    try {
      const view = await opened();
      const disk = view.disks[0]!;
      assert.equal(disk.sizeBytes, SIZE);
      const uri = `${disk.uri}?tls-psk-file=${view.pskFile}`;
      assert.equal(Number((await runOk('nbdinfo', ['--size', uri])).trim()), SIZE);
      const qemu = await runOk('qemu-img', [
        'info',
        '--output=json',
        ...qemuImgArgs({ uri: disk.uri, identity: view.psk.identity }, dirname(view.pskFile)),
      ]);
      assert.equal(JSON.parse(qemu)['virtual-size'], SIZE);
      assert.notEqual(
        (await run('nbdinfo', ['--size', disk.uri.replace(/^nbds:\/\/[^@]+@/, 'nbd://')])).code,
        0,
      );
      const listed = await api<{ views: AccessView[] }>('GET', `/views?machineId=${machine.id}`);
      assert.deepEqual(
        listed.body.views.map((v) => v.id),
        [view.id],
      );
      assert.ok(!JSON.stringify(listed.body).includes(view.psk.keyHex), 'the key is never listed');

      child.kill('SIGINT');
      assert.equal(await exited, 0, output());
      assert.deepEqual(ended(), { id: view.id, closedReason: { kind: 'stopped', by: 'admin' } });
      assert.notEqual((await run('nbdinfo', ['--size', uri])).code, 0, 'the export ended with the view');
      assert.deepEqual((await api<{ views: AccessView[] }>('GET', '/views')).body.views, []);
    } finally {
      child.kill('SIGKILL');
    }
  });

  for (const format of ['raw', 'qcow2'] as const) {
    it(`haven export --format ${format} equals the point (qemu-img compare), holes kept`, async () => {
      const file = join(dir, `files-01.${format}`);
      const r = await runHaven([
        'export',
        'files-01',
        '--point',
        point.id,
        '--out',
        file,
        '--format',
        format,
        ...conn(),
      ]);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(r.stdout, /Exported disk0 of files-01/);
      if (format === 'raw') {
        assert.match(r.stderr, /exporting disk0: .* of 16 MiB \(100%\)/);
        const st = await stat(file);
        assert.equal(st.size, SIZE);
        assert.ok(st.blocks * 512 < 4 << 20, `holes stay holes (${st.blocks * 512} bytes allocated)`);
      }
      const reference = await referenceView();
      try {
        const cmp = await run('qemu-img', [
          'compare',
          '-f',
          format,
          '-F',
          'raw',
          file,
          reference.disks[0]!.unixUri,
        ]);
        assert.equal(cmp.code, 0, cmp.stdout + cmp.stderr);
      } finally {
        await api('DELETE', `/views/${reference.id}`);
      }
    });
  }

  it('a view expires through the API (5 s): haven view ends and says why, the view reads as closed', async () => {
    const r = await runHaven([
      'view',
      'files-01',
      '--point',
      pointLabel(point),
      '--expires',
      '5s',
      ...conn(),
    ]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const id = r.stdout.match(/View (view-\w+)/)![1]!;
    assert.match(r.stdout, /The view closed: expired\./);
    const { body } = await api<{ view: AccessView }>('GET', `/views/${id}`);
    assert.deepEqual(body.view.closedReason, { kind: 'expired' });
    assert.deepEqual((await api<{ views: AccessView[] }>('GET', '/views')).body.views, []);
    const tooShort = await api('POST', `/machines/${machine.id}/views`, {
      recoveryPoint: { option: 'latest' },
      expiresInSeconds: 4,
    });
    assert.equal(tooShort.status, 400);
  });

  it(`a view closed by another operator: haven view exits ${VIEW_ENDED_UNDER_IT} with the typed reason; a second close is refused with it`, async () => {
    const token = await api<{ token: string }>('POST', '/tokens', { name: 'night-shift', role: 'operator' });
    assert.equal(token.status, 201);
    const { child, exited, output, opened, ended } = viewInBackground();
    try {
      const view = await opened();
      const closed = await up.vault.app.request(`/api/v1/views/${view.id}`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${token.body.token}` },
      });
      assert.equal(closed.status, 204);
      assert.equal(await exited, VIEW_ENDED_UNDER_IT, output());
      assert.deepEqual(ended(), { id: view.id, closedReason: { kind: 'deleted', by: 'night-shift' } });
      const again = await api<{ message: string }>('DELETE', `/views/${view.id}`);
      assert.equal(again.status, 404);
      assert.match(JSON.stringify(again.body), /closed by night-shift\)/);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('views outlive a vault restart; after a host restart they read as closed and a writable overlay is swept', async (t) => {
    const ro = await openView(false);
    const rw = await openView(true);
    const recovery = up.hosts.find((h) => h.agent.identity.name === 'recovery')!;
    assert.ok(
      await recovery.dataPath.replicaStore.keptView(`${machine.id}/disk0`, rw.id),
      "the writable view's overlay is on disk",
    );

    // The vault restarts; the hosts keep serving and reconnect.
    await up.vault.stop();
    const vault = await startVault({ dataDir: dir, port: 0, monitorIntervalMs: 200 });
    const stopHosts = up.stop;
    up = {
      ...up,
      vault,
      stop: async () => {
        await stopHosts().catch(() => {});
        await vault.stop();
      },
    };
    await until('the recovery host reconnected', async () => {
      const { body } = await api<{ hosts: { name: string; status: string }[] }>('GET', '/hosts');
      return body.hosts.every((h) => h.status === 'connected');
    });
    const listed = await api<{ views: AccessView[] }>('GET', '/views');
    assert.deepEqual(listed.body.views.map((v) => v.id).sort(), [ro.id, rw.id].sort());

    // `haven view` on the same point, against the restarted vault: the host's restart ends it under it.
    const watching = viewInBackground(['--expires', '10m']);
    t.after(() => watching.child.kill('SIGKILL'));
    const watched = await watching.opened();

    // The recovery host restarts (its views' keys were in memory only; a stop keeps overlays, as a crash would).
    const index = up.hosts.indexOf(recovery);
    await recovery.stop();
    const lines: string[] = [];
    const again = await startHost({
      ...embeddedHostOptions({ dataDir: dir }, 'recovery'),
      log: (line) => lines.push(line),
    });
    up.hosts[index] = again;
    assert.equal(
      await again.dataPath.replicaStore.keptView(`${machine.id}/disk0`, rw.id),
      null,
      'the overlay is swept',
    );
    assert.ok(
      lines.some((l) => l.includes('removed the overlays') && l.includes(rw.id)),
      `the host says so: ${lines.join('\n')}`,
    );
    const closed = await until('both views closed by reconciliation', async () => {
      const views = await Promise.all(
        [ro, rw].map(async (v) => (await api<{ view: AccessView }>('GET', `/views/${v.id}`)).body.view),
      );
      return views.every((v) => v.closedAt !== null) ? views : undefined;
    });
    for (const v of closed) assert.deepEqual(v.closedReason, { kind: 'host-restarted' });
    assert.equal(await watching.exited, VIEW_ENDED_UNDER_IT, watching.output());
    assert.deepEqual(watching.ended(), { id: watched.id, closedReason: { kind: 'host-restarted' } });
    assert.deepEqual((await api<{ views: AccessView[] }>('GET', '/views')).body.views, []);
  });
});

async function openView(writable: boolean): Promise<OpenedAccessView> {
  const opened = await api<{ view: OpenedAccessView }>('POST', `/machines/${machine.id}/views`, {
    recoveryPoint: { option: 'custom', pointId: point.id },
    writable,
    expiresInSeconds: 600,
  });
  assert.equal(opened.status, 201, JSON.stringify(opened.body));
  return opened.body.view;
}
