import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { copyGuestBoot } from '../app/demo-machine.ts';
import { type Embedded, startEmbedded } from '../app/start-embedded.ts';
import { isTerminalJobState } from '../domain/job-states.ts';
import type { Job, Machine } from '../domain/model.ts';
import { guestCommandLine } from '../guest/index.ts';
import type { ConsoleLog, MachineStatus, ShutdownResult } from '../host/host-services.ts';
import { runHaven } from '../testing/child-process.ts';
import { embeddedApi } from '../testing/embedded-api.ts';
import { spawnHandStartedQemu } from '../testing/hypervisor-test.fixture.ts';
import { until } from '../testing/until.ts';

/**
 * An operator's own machine under the built-in QEMU driver, through the CLI
 * and the API: created from the test guest's kernel and initrd with a 64M
 * disk made on the host, started, its boot read on the console, stopped,
 * deleted; and the refusals at the request. Then ownership: replication of
 * a disk that another process writes is refused, naming the process.
 */
let dir: string;
let up: Embedded;
const api = embeddedApi(() => up);
const children: ChildProcess[] = [];

const haven = async (...args: string[]) => {
  const result = await runHaven([...args, '--url', up.vault.url, '--token', up.adminToken]);
  assert.equal(result.code, 0, `haven ${args.join(' ')}: ${result.stdout}${result.stderr}`);
  return result.stdout;
};

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-own-'));
  up = await startEmbedded({ dataDir: dir, port: 0, demo: false, senderPollMs: 25 });
});

after(async () => {
  for (const child of children) child.kill('SIGKILL');
  await up?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('your own machine under the built-in QEMU driver', () => {
  it('refuses bad sizes and NICs at the request, naming the field', async () => {
    const base = { name: 'bad-01', hostId: 'primary', disks: [{ id: 'disk0', sizeBytes: 64 << 20 }] };
    const size = await api<{ error: { details: { field: string } } }>('POST', '/machines', {
      ...base,
      disks: [{ id: 'disk0', sizeBytes: 1000 }],
    });
    assert.equal(size.status, 400);
    assert.equal(size.body.error.details.field, 'disks.0.sizeBytes');
    const settings = { targetName: 'bad-01', cpus: 1, memoryMiB: 128 };
    const mac = await api<{ error: { details: { field: string } } }>('POST', '/machines', {
      ...base,
      recoverySettings: { ...settings, nics: [{ network: 'lan', mac: 'not-a-mac' }] },
    });
    assert.equal(mac.status, 400);
    assert.equal(mac.body.error.details.field, 'recoverySettings.nics.0.mac');
    const network = await api<{ error: { message: string; details: { field: string } } }>(
      'POST',
      '/machines',
      {
        ...base,
        recoverySettings: {
          ...settings,
          nics: [{ network: 'lan' }, { network: 'a-network-name-too-long' }],
        },
      },
    );
    assert.equal(network.status, 400, JSON.stringify(network.body));
    assert.equal(network.body.error.details.field, 'recoverySettings.nics.1.network');
    assert.match(network.body.error.message, /a-network-name-too-long/);
    const cli = await runHaven([
      'machines',
      'create',
      'bad-01',
      '--host',
      'primary',
      '--disk',
      'disk0=12Q',
      '--url',
      up.vault.url,
      '--token',
      up.adminToken,
    ]);
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /--disk: 'disk0=12Q'/);
    assert.equal((await api('GET', '/machines/bad-01')).status, 404, 'nothing was registered');
  });

  it('refuses boot files outside the storage folders: /etc/shadow at the request, a link to it at start', async () => {
    const boot = await copyGuestBoot(join(dir, 'images'));
    const create = (name: string, initrd: string) =>
      api<{ error: { message: string; details: { field: string; allowedFolders: string[] } } }>(
        'POST',
        '/machines',
        {
          name,
          hostId: 'primary',
          disks: [{ id: 'disk0', sizeBytes: 1 << 20 }],
          recoverySettings: {
            targetName: name,
            cpus: 1,
            memoryMiB: 128,
            boot: { kernel: boot.kernel, initrd, cmdline: guestCommandLine() },
          },
        },
      );
    const shadow = await create('shadow-01', '/etc/shadow');
    assert.equal(shadow.status, 400, JSON.stringify(shadow.body));
    assert.equal(shadow.body.error.details.field, 'recoverySettings.boot.initrd');
    assert.deepEqual(shadow.body.error.details.allowedFolders, [join(dir, 'images'), join(dir, 'demo')]);
    const cli = await runHaven([
      'machines',
      'create',
      'shadow-01',
      '--host',
      'primary',
      '--disk',
      'disk0=1M',
      '--kernel',
      boot.kernel,
      '--initrd',
      '/etc/shadow',
      '--url',
      up.vault.url,
      '--token',
      up.adminToken,
    ]);
    assert.notEqual(cli.code, 0);
    assert.match(
      cli.stderr,
      /recoverySettings\.boot\.initrd: '\/etc\/shadow' is not inside a storage folder/,
    );
    assert.equal((await api('GET', '/machines/shadow-01')).status, 404, 'nothing was registered');

    // A link inside a storage folder passes the vault's check as text; the host resolves it and refuses.
    const link = join(dir, 'images', 'initrd-link');
    await symlink('/etc/shadow', link);
    const linked = await create('shadow-02', link);
    assert.equal(linked.status, 201, JSON.stringify(linked.body));
    const started = await api<{ error: { message: string; details: { field: string; machine: string } } }>(
      'POST',
      '/machines/shadow-02/start',
      {},
    );
    assert.equal(started.status, 400, JSON.stringify(started.body));
    assert.equal(started.body.error.details.field, 'boot.initrd');
    assert.match(started.body.error.message, /machine 'shadow-02': .*symbolic link to '\/etc\/shadow'/);
    const machine = (await api<Machine>('GET', '/machines/shadow-02')).body;
    const status = await up.vault.context.hosts.call<MachineStatus>(
      machine.activeHostId,
      'hypervisor.status',
      {
        name: 'shadow-02',
      },
    );
    assert.equal(status.state, 'absent', 'the host defined nothing');
    await haven('machines', 'delete', 'shadow-02');
  });

  it('creates a machine from a kernel and initrd with a 64M disk, starts it, and shows its boot', async () => {
    const image = await copyGuestBoot(join(dir, 'images'));
    await haven(
      'machines',
      'create',
      'own-01',
      '--host',
      'primary',
      '--disk',
      'disk0=64M',
      '--kernel',
      image.kernel,
      '--initrd',
      image.initrd,
      '--cmdline',
      guestCommandLine(),
      '--memory',
      '128',
    );
    const machine = (await api<Machine>('GET', '/machines/own-01')).body;
    assert.equal(machine.disks[0]!.sizeBytes, 64 << 20);
    assert.equal(machine.disks[0]!.source, join(dir, 'images', 'own-01-disk0.img'));
    assert.match(await haven('machines', 'start', 'own-01'), /running/);
    assert.equal((await stat(machine.disks[0]!.source)).size, 64 << 20, 'the disk image was made, sparse');
    const lines = await until(
      'the guest to boot',
      async () => {
        const { body } = await api<ConsoleLog>('GET', '/machines/own-01/console');
        return body.lines.some((l) => l.includes('haven-guest booted')) ? body.lines : undefined;
      },
      { timeoutMs: 180_000, intervalMs: 500 },
    );
    assert.ok(lines.length > 0);
    assert.match(await haven('console', 'own-01', '--tail', '50'), /haven-guest booted/);
    // Following: the last lines as server-sent events, the stream stays open.
    const response = await up.vault.app.request('/api/v1/machines/own-01/console?follow=1&tail=3', {
      headers: { authorization: `Bearer ${up.adminToken}` },
    });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /text\/event-stream/);
    const reader = response.body!.getReader();
    let text = '';
    while ((text.match(/event: line/g) ?? []).length < 3) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    await reader.cancel();
    assert.equal((text.match(/event: line/g) ?? []).length, 3, text);
  });

  it('refuses to delete the running machine, naming its state', async () => {
    const refused = await api<{ error: { message: string; details: { power: string } } }>(
      'DELETE',
      '/machines/own-01',
    );
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.details.power, 'running');
    assert.match(refused.body.error.message, /own-01' is running.*stop it first/);
  });

  it('stops the machine with an ACPI shutdown, then deletes it (its image stays)', async () => {
    const stopped = await api<ShutdownResult>('POST', '/machines/own-01/stop', { forceOffAfterSeconds: 120 });
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    assert.equal(stopped.body.outcome, 'powered-down');
    const machine = (await api<Machine>('GET', '/machines/own-01')).body;
    await haven('machines', 'delete', 'own-01');
    assert.equal((await api('GET', '/machines/own-01')).status, 404);
    const status = await up.vault.context.hosts.call<MachineStatus>(
      machine.activeHostId,
      'hypervisor.status',
      { name: 'own-01' },
    );
    assert.equal(status.state, 'absent', 'its definition is gone from the host');
    assert.ok((await stat(machine.disks[0]!.source)).isFile(), 'the image stays');
  });
});

describe('ownership: a disk that another process writes is not replicated', () => {
  const image = () => join(dir, 'images', 'owned-01-disk0.img');
  const enable = () =>
    api<Job & { error: { message: string; details: Record<string, unknown> } }>(
      'POST',
      '/machines/owned-01/enable-replication',
      { recoveryHostId: 'recovery', policyId: 'default' },
    );
  const exited = (child: ChildProcess) =>
    new Promise<void>((resolve) =>
      child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve()),
    );

  before(async () => {
    const created = await api('POST', '/machines', {
      name: 'owned-01',
      hostId: 'primary',
      disks: [{ id: 'disk0', sizeBytes: 1 << 20 }],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    // Made as `machines start` would, without starting it: the image exists, nobody holds it.
    const machine = (await api<Machine>('GET', '/machines/owned-01')).body;
    await up.vault.context.hosts.call(machine.activeHostId, 'disk.attach', {
      machineId: machine.id,
      diskId: 'disk0',
      source: image(),
      sizeBytes: 1 << 20,
    });
  });

  it('refuses while a QEMU started by hand writes the image, naming it', async () => {
    const qemu = spawnHandStartedQemu('guest=by-hand', [{ file: image(), format: 'raw' }]);
    children.push(qemu);
    // Asked only once the host sees it: a request before QEMU opened the image would be (rightly) accepted.
    const machine = (await api<Machine>('GET', '/machines/owned-01')).body;
    await until(
      'the QEMU to open the image',
      async () => {
        const seen = (await up.vault.context.hosts.call(machine.activeHostId, 'disk.writers', {
          machineId: machine.id,
          diskId: 'disk0',
          source: image(),
        })) as { writers: Array<{ pid: number }> };
        return seen.writers.some((w) => w.pid === qemu.pid) ? true : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    const refused = await enable();
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.match(
      refused.body.error.message,
      new RegExp(
        `Machine 'owned-01' \\(unprotected\\): disk disk0's .* pid ${qemu.pid} \\(qemu-system-x86_64.*QEMU guest 'by-hand'`,
      ),
    );
    qemu.kill('SIGKILL');
    await exited(qemu);
  });

  it('refuses while a shell process holds the image open for writing, then allows it once it exits', async () => {
    // `exec 3<>FILE`: the shell holds the image open read-write, as a script writing it would.
    const shell = spawn('sh', ['-c', `exec 3<>'${image()}'; echo open; exec sleep 600`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(shell);
    await new Promise((resolve) => shell.stdout!.once('data', resolve));
    const refused = await enable();
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal(refused.body.error.details.diskId, 'disk0');
    assert.match(refused.body.error.message, new RegExp(`pid ${shell.pid} \\(sleep 600\\)`));
    shell.kill('SIGKILL');
    await exited(shell);
    const accepted = await enable();
    assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
    const job = await until(
      'enable-replication to end',
      async () => {
        const { body } = await api<Job>('GET', `/jobs/${accepted.body.id}`);
        return isTerminalJobState(body.state) ? body : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
  });
});
