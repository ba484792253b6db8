import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { QmpClient } from './qmp-client.ts';

/** A real QEMU with no guest: paused before the first instruction, which is all QMP needs. */
describe('QMP client against a real QEMU', () => {
  let dir: string;
  let socket: string;
  let qemu: ChildProcess;
  let qemuExited: Promise<void>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'haven-qmp-'));
    socket = join(dir, 'qmp.sock');
    qemu = spawn(
      'qemu-system-x86_64',
      [
        '-accel',
        'tcg',
        '-machine',
        'pc',
        '-S',
        '-nodefaults',
        '-display',
        'none',
        '-qmp',
        `unix:${socket},server=on,wait=off`,
      ],
      { stdio: 'ignore' },
    );
    qemuExited = new Promise((resolve) => qemu.on('exit', () => resolve()));
    for (let i = 0; ; i++) {
      try {
        await access(socket);
        break;
      } catch {
        if (i > 500) throw new Error('QEMU did not create its QMP socket');
        await sleep(20);
      }
    }
  });
  after(async () => {
    if (qemu.exitCode === null) qemu.kill('SIGKILL');
    await qemuExited;
    await rm(dir, { recursive: true, force: true });
  });

  it('greets, negotiates, and answers commands by id', async () => {
    const qmp = await QmpClient.connect(socket, { label: 'qmp-test' });
    try {
      assert.equal(qmp.greeting.QMP.version.qemu.major >= 7, true);
      // Concurrent commands come back to the right caller.
      const [status, name] = await Promise.all([
        qmp.execute<{ status: string; running: boolean }>('query-status'),
        qmp.execute<Record<string, unknown>>('query-name'),
      ]);
      assert.deepEqual(
        { status: status.status, running: status.running },
        { status: 'prelaunch', running: false },
      );
      assert.deepEqual(name, {});
    } finally {
      await qmp.close();
    }
  });

  it('maps QMP errors to HavenErrors carrying the class and description', async () => {
    const qmp = await QmpClient.connect(socket, { label: 'qmp-test' });
    try {
      await assert.rejects(
        qmp.execute('no-such-command'),
        (error: Error & { code: string; details: Record<string, unknown> }) => {
          assert.equal(error.code, 'not_available');
          assert.equal(error.details.qmpClass, 'CommandNotFound');
          assert.match(
            error.message,
            /'no-such-command' on 'qmp-test' failed: CommandNotFound: The command no-such-command has not been found/,
          );
          return true;
        },
      );
      await assert.rejects(qmp.execute('device_del', { id: 'nope' }), {
        code: 'not_found',
        details: {
          machine: 'qmp-test',
          command: 'device_del',
          qmpClass: 'DeviceNotFound',
          qmpDesc: "Device 'nope' not found",
        },
      });
      await assert.rejects(
        qmp.execute('blockdev-del', { 'node-name': 'nope' }),
        (error: Error & { code: string; details: Record<string, unknown> }) => {
          assert.equal(error.code, 'conflict');
          assert.equal(error.details.qmpClass, 'GenericError');
          assert.match(String(error.details.qmpDesc), /nope/);
          return true;
        },
      );
      // The connection is still usable after errors.
      assert.equal((await qmp.execute<{ status: string }>('query-status')).status, 'prelaunch');
    } finally {
      await qmp.close();
    }
  });

  it('delivers events: RESUME, STOP, POWERDOWN and block job events', async () => {
    const qmp = await QmpClient.connect(socket, { label: 'qmp-test' });
    try {
      const resumed = qmp.waitForEvent('RESUME', { timeoutMs: 5000 });
      await qmp.execute('cont');
      assert.equal((await resumed).event, 'RESUME');
      const stopped = qmp.waitForEvent('STOP', { timeoutMs: 5000 });
      await qmp.execute('stop');
      assert.equal(typeof (await stopped).timestamp.seconds, 'number');
      const powerdown = qmp.waitForEvent('POWERDOWN', { timeoutMs: 5000 });
      await qmp.execute('system_powerdown');
      await powerdown;

      // A mirror between two null block devices: the job events the replication code relies on.
      for (const node of ['src', 'dst']) {
        await qmp.execute('blockdev-add', { driver: 'null-co', 'node-name': node, size: 1 << 20 });
      }
      const ready = qmp.waitForEvent('BLOCK_JOB_READY', {
        timeoutMs: 10_000,
        predicate: (e) => e.data.device === 'm1',
      });
      await qmp.execute('blockdev-mirror', { 'job-id': 'm1', device: 'src', target: 'dst', sync: 'full' });
      assert.equal((await ready).data.type, 'mirror');
      const completed = qmp.waitForEvent('BLOCK_JOB_COMPLETED', { timeoutMs: 10_000 });
      await qmp.execute('block-job-cancel', { device: 'm1' });
      assert.equal((await completed).data.device, 'm1');
      await qmp.execute('blockdev-del', { 'node-name': 'dst' });
      await qmp.execute('blockdev-del', { 'node-name': 'src' });
    } finally {
      await qmp.close();
    }
  });

  it('times out cleanly: no greeting while another client holds the monitor, no event in time', async () => {
    const first = await QmpClient.connect(socket, { label: 'qmp-test' });
    try {
      const began = Date.now();
      await assert.rejects(QmpClient.connect(socket, { label: 'second', timeoutMs: 300 }), {
        code: 'unreachable',
        message: /QMP of 'second' did not greet within 300 ms/,
      });
      assert.ok(Date.now() - began < 3000);
      await assert.rejects(first.waitForEvent('SHUTDOWN', { timeoutMs: 100 }), {
        code: 'unreachable',
        message: /no QMP event SHUTDOWN/,
      });
    } finally {
      await first.close();
    }
    await assert.rejects(QmpClient.connect(join(dir, 'missing.sock'), { label: 'missing' }), {
      code: 'unreachable',
      message: /cannot connect to the QMP socket of 'missing': ENOENT/,
    });
  });

  it('sees SHUTDOWN and the close on quit, then refuses commands', async () => {
    const qmp = await QmpClient.connect(socket, { label: 'qmp-test' });
    const shutdown = qmp.waitForEvent('SHUTDOWN', { timeoutMs: 5000 });
    await qmp.execute('quit');
    assert.equal((await shutdown).data.reason, 'host-qmp-quit');
    await qmp.closed;
    await assert.rejects(qmp.execute('query-status'), {
      code: 'unreachable',
      message: /is closed; cannot run 'query-status'/,
    });
    await qemuExited;
  });
});
