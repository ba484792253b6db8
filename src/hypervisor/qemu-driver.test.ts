import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildGuestImage, formatDataDisk, type GuestImage } from '../guest/index.ts';
import {
  type NbdPeer,
  startNbdPeer,
  testGuestMachine,
  waitForConsole,
} from '../testing/hypervisor-test.fixture.ts';
import type { MachineDefinition } from './hypervisor.ts';
import { QemuDriver } from './qemu-driver.ts';
import { findQemuProcesses, isAlive } from './qemu-process.ts';

/** Rejects with this HavenError code, and details holding at least `details`. */
async function rejectsWith(
  promise: Promise<unknown>,
  code: string,
  details: Record<string, unknown> = {},
  message?: RegExp,
) {
  await assert.rejects(promise, (error: Error & { code?: string; details?: Record<string, unknown> }) => {
    assert.equal(error.code, code, error.message);
    for (const [key, value] of Object.entries(details)) assert.deepEqual(error.details?.[key], value, key);
    if (message) assert.match(error.message, message);
    return true;
  });
}

/**
 * One machine through its life on a real QEMU (TCG): the Haven test guest
 * booted from its kernel, its data disk an NBD export served by qemu-nbd.
 * The steps share the machine, so they run in order.
 */
describe('QEMU driver with the test guest', () => {
  let image: GuestImage;
  let dir: string;
  let nbd: NbdPeer;
  let driver: QemuDriver;
  let machine: MachineDefinition;

  before(async () => {
    image = await buildGuestImage();
    dir = await mkdtemp(join(tmpdir(), 'hv-'));
    const disk = join(dir, 'data.img');
    await formatDataDisk(disk, { sizeBytes: 32 * 1024 * 1024 });
    nbd = await startNbdPeer('qemu-nbd', join(dir, 'nbd.sock'), 'vm1-disk0', [disk]);
    driver = new QemuDriver({ stateDir: join(dir, 'state') });
    machine = testGuestMachine('vm1', nbd.uri, image);
  });
  after(async () => {
    await driver?.fence({ name: 'vm1' }).catch(() => {});
    await nbd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('defines a machine, validating it, and knows nothing else', async () => {
    await rejectsWith(driver.define({ machine: { ...machine, memoryMiB: 64 } }), 'validation_failed', {
      machine: 'vm1',
      field: 'memoryMiB',
    });
    await assert.rejects(driver.define({ machine: { ...machine, disks: [] } }), {
      code: 'validation_failed',
    });
    assert.deepEqual(await driver.define({ machine }), { name: 'vm1', state: 'shut-off' });
    assert.deepEqual(await driver.list(), [{ name: 'vm1', state: 'shut-off' }]);
    assert.deepEqual(await driver.status({ name: 'nope' }), { name: 'nope', state: 'absent' });
    await assert.rejects(driver.start({ name: 'nope' }), {
      code: 'not_found',
      message: "machine 'nope' does not exist",
    });
  });

  it('starts it: the guest prints its first console line and runs its workload', async () => {
    const began = Date.now();
    assert.deepEqual(await driver.start({ name: 'vm1' }), { name: 'vm1', state: 'running' });
    const started = Date.now();
    await waitForConsole(driver, 'vm1', /^haven-guest booted$/);
    const firstLine = Date.now();
    console.log(
      `start() took ${started - began} ms; first console line ${firstLine - began} ms after start()`,
    );
    await waitForConsole(driver, 'vm1', /^durable [3-9]$/);
    assert.deepEqual(await driver.status({ name: 'vm1' }), { name: 'vm1', state: 'running' });
    // Starting a running machine is a no-op (a retried job step).
    assert.deepEqual(await driver.start({ name: 'vm1' }), { name: 'vm1', state: 'running' });
    assert.deepEqual((await driver.consoleLog({ name: 'vm1', tail: 1 })).lines.length, 1);
  });

  it('a restarted driver on the same state directory re-attaches to the running machine', async () => {
    const restarted = new QemuDriver({ stateDir: join(dir, 'state') });
    assert.deepEqual(await restarted.list(), [{ name: 'vm1', state: 'running' }]);
    assert.equal((await restarted.definition('vm1'))?.disks[0]?.nbdUri, nbd.uri);
    const status = await restarted.qmp('vm1', (qmp) => qmp.execute<{ status: string }>('query-status'));
    assert.equal(status.status, 'running');
    await rejectsWith(restarted.undefine({ name: 'vm1' }), 'operation_not_allowed', {
      machine: 'vm1',
      state: 'running',
    });
    await rejectsWith(restarted.define({ machine: { ...machine, cpus: 2 } }), 'operation_not_allowed', {
      state: 'running',
    });
    driver = restarted;
  });

  it('maps QMP errors cleanly', async () => {
    await rejectsWith(
      driver.qmp('vm1', (qmp) => qmp.execute('no-such-command')),
      'not_available',
      {
        machine: 'vm1',
        command: 'no-such-command',
        qmpClass: 'CommandNotFound',
      },
    );
  });

  it('shuts it down cleanly through ACPI within the timeout', async () => {
    const result = await driver.shutdown({ name: 'vm1', timeoutSeconds: 30 });
    assert.equal(result.state, 'shut-off');
    assert.equal(result.outcome, 'powered-down');
    assert.ok(result.seconds < 30);
    const { lines } = await driver.consoleLog({ name: 'vm1' });
    assert.ok(lines.includes('powered off cleanly'), lines.slice(-5).join('\n'));
    assert.deepEqual(await driver.status({ name: 'vm1' }), { name: 'vm1', state: 'shut-off' });
    const again = await driver.shutdown({ name: 'vm1', timeoutSeconds: 1 });
    assert.equal(again.outcome, 'already-off');
  });

  it('a guest that ignores the powerdown: fails, or is stopped, as asked', async () => {
    await driver.start({ name: 'vm1' });
    // The console starts afresh for each run; the previous one is kept aside.
    const previous = await readFile(join(dir, 'state', 'machines', 'vm1', 'console.log.1'), 'utf8');
    assert.match(previous, /powered off cleanly/);
    // A paused guest cannot react to ACPI: the timeout path, deterministically.
    await driver.qmp('vm1', (qmp) => qmp.execute('stop'));
    assert.deepEqual(await driver.status({ name: 'vm1' }), { name: 'vm1', state: 'paused' });
    await assert.rejects(
      driver.shutdown({ name: 'vm1', timeoutSeconds: 0.5 }),
      (error: Error & { code: string; details: { state: string } }) => {
        assert.equal(error.code, 'conflict');
        assert.match(
          error.message,
          /'vm1' did not power down within 0.5 s of the ACPI powerdown request and is paused/,
        );
        assert.equal(error.details.state, 'paused');
        return true;
      },
    );
    const stopped = await driver.shutdown({ name: 'vm1', timeoutSeconds: 0.5, onTimeout: 'stop' });
    assert.deepEqual(
      { state: stopped.state, outcome: stopped.outcome },
      { state: 'paused', outcome: 'stopped' },
    );
    await rejectsWith(driver.start({ name: 'vm1' }), 'operation_not_allowed', { state: 'paused' });
    const forced = await driver.shutdown({ name: 'vm1', timeoutSeconds: 0.2, onTimeout: 'power-off' });
    assert.deepEqual(
      { state: forced.state, outcome: forced.outcome },
      { state: 'shut-off', outcome: 'powered-off' },
    );
  });

  it('powers it off and fences it, idempotently, even with its pidfile lost', async () => {
    const stateDir = join(dir, 'state');
    const qmpSocket = join(stateDir, 'machines', 'vm1', 'qmp.sock');
    await driver.start({ name: 'vm1' });
    const [pid] = await findQemuProcesses(qmpSocket);
    assert.ok(pid && (await isAlive(pid)));
    assert.deepEqual(await driver.powerOff({ name: 'vm1' }), { name: 'vm1', state: 'shut-off' });
    assert.equal(await isAlive(pid), false);

    await driver.start({ name: 'vm1' });
    const [second] = await findQemuProcesses(qmpSocket);
    // Lose the pidfile: status can no longer see it, but fence must still find and end it.
    await rm(join(stateDir, 'machines', 'vm1', 'qemu.pid'));
    assert.deepEqual(await driver.fence({ name: 'vm1' }), { name: 'vm1', state: 'shut-off' });
    assert.equal(await isAlive(second!), false);
    assert.deepEqual(await findQemuProcesses(qmpSocket), []);
    assert.deepEqual(await driver.fence({ name: 'vm1' }), { name: 'vm1', state: 'shut-off' });
    assert.deepEqual(await driver.fence({ name: 'never-defined' }), {
      name: 'never-defined',
      state: 'absent',
    });
  });

  it('refuses to start on an unreachable disk, with QEMU’s reason, leaving nothing running', async () => {
    const broken = {
      ...machine,
      name: 'vm2',
      disks: [{ diskId: 'disk0', nbdUri: `nbd+unix:///x?socket=${join(dir, 'absent.sock')}` }],
    };
    await driver.define({ machine: broken });
    await assert.rejects(driver.start({ name: 'vm2' }), (error: Error & { code: string }) => {
      assert.equal(error.code, 'unreachable');
      assert.match(error.message, /QEMU could not start machine 'vm2': .*absent\.sock/s);
      return true;
    });
    assert.deepEqual(await driver.status({ name: 'vm2' }), { name: 'vm2', state: 'shut-off' });
    assert.deepEqual(await findQemuProcesses(join(dir, 'state', 'machines', 'vm2', 'qmp.sock')), []);
  });

  it('undefines machines that are off, idempotently', async () => {
    await driver.undefine({ name: 'vm2' });
    await driver.undefine({ name: 'vm1' });
    await driver.undefine({ name: 'vm1' });
    assert.deepEqual(await driver.list(), []);
    await assert.rejects(driver.consoleLog({ name: 'vm1' }), { code: 'not_found' });
  });
});
