import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { buildGuestImage, formatDataDisk } from '../../guest/index.ts';
import type { Hypervisor, MachinePowerState } from '../../host/host-services.ts';
import { QemuDriver } from '../../hypervisor/qemu-driver.ts';
import { findQemuProcesses } from '../../hypervisor/qemu-process.ts';
import { startNbdPeer, testGuestMachine } from '../../testing/hypervisor-test.fixture.ts';
import { fenceAndVerify } from './verified-fence.ts';

type Fenceable = Pick<Hypervisor, 'fence' | 'status'>;

/** A driver that says "fenced" whatever happened, its status telling the truth. */
function lyingDriver(state: () => Promise<MachinePowerState>): Fenceable {
  return {
    fence: async ({ name }) => ({ name, state: 'shut-off' }),
    status: async ({ name }) => ({ name, state: await state() }),
  };
}

describe('fencing is reported only when verified', () => {
  it('a driver that claims success while the machine still runs: not fenced', async () => {
    const outcome = await fenceAndVerify(
      lyingDriver(async () => 'running'),
      'vm1',
    );
    assert.equal(outcome.fenced, false);
    assert.equal(outcome.state, 'running');
    assert.match(outcome.fenced ? '' : outcome.reason, /still reports it running after fencing/);
  });

  it('a paused machine is not fenced either (its process can still be resumed)', async () => {
    const outcome = await fenceAndVerify(
      lyingDriver(async () => 'paused'),
      'vm1',
    );
    assert.deepEqual([outcome.fenced, outcome.state], [false, 'paused']);
  });

  it('a failed fence, or a status nobody can read: not verified, never fenced', async () => {
    const failing: Fenceable = {
      fence: async () => {
        throw new Error('QMP socket gone');
      },
      status: async ({ name }) => ({ name, state: 'shut-off' }),
    };
    const unknown = await fenceAndVerify(failing, 'vm1');
    assert.deepEqual([unknown.fenced, unknown.state], [false, 'unknown']);
    const blind: Fenceable = {
      fence: async ({ name }) => ({ name, state: 'shut-off' }),
      status: async () => {
        throw new Error('host lost');
      },
    };
    const unknownToo = await fenceAndVerify(blind, 'vm1');
    assert.deepEqual([unknownToo.fenced, unknownToo.state], [false, 'unknown']);
  });

  it('fenced when the hypervisor, asked again, reports it off', async () => {
    const outcome = await fenceAndVerify(
      lyingDriver(async () => 'shut-off'),
      'vm1',
    );
    assert.deepEqual(outcome, { fenced: true, state: 'shut-off' });
  });

  describe('with a real QEMU', () => {
    const dirs: string[] = [];
    after(async () => {
      for (const dir of dirs) await rm(dir, { recursive: true, force: true });
    });

    it('a lying fence over a running QEMU is caught; the real fence is verified and leaves no process', async () => {
      const image = await buildGuestImage();
      const dir = await mkdtemp(join(tmpdir(), 'fence-'));
      dirs.push(dir);
      const disk = join(dir, 'data.img');
      await formatDataDisk(disk, { sizeBytes: 16 << 20 });
      const nbd = await startNbdPeer('qemu-nbd', join(dir, 'nbd.sock'), 'vm1-disk0', [disk]);
      const driver = new QemuDriver({ stateDir: join(dir, 'state') });
      try {
        await driver.define({ machine: testGuestMachine('vm1', nbd.uri, image) });
        await driver.start({ name: 'vm1' });
        const lying = await fenceAndVerify(
          { fence: async ({ name }) => ({ name, state: 'shut-off' }), status: (p) => driver.status(p) },
          'vm1',
        );
        assert.deepEqual([lying.fenced, lying.state], [false, 'running']);

        const real = await fenceAndVerify(driver, 'vm1');
        assert.deepEqual(real, { fenced: true, state: 'shut-off' });
        assert.deepEqual(await findQemuProcesses(join(dir, 'state', 'machines', 'vm1', 'qmp.sock')), []);
      } finally {
        await driver.fence({ name: 'vm1' }).catch(() => {});
        await nbd.stop();
      }
    });
  });
});
