import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LibvirtMirror } from './libvirt-mirror.ts';
import { Virsh } from './virsh.ts';

/** Answers `query-block-jobs` through the QMP passthrough with the given job. */
class JobVirsh extends Virsh {
  readonly #job: Record<string, unknown>;
  constructor(job: Record<string, unknown>) {
    super('test:///');
    this.#job = job;
  }
  override async run(args: string[]): Promise<string> {
    const request = JSON.parse(args[2]!) as { execute: string };
    assert.deepEqual([args[0], request.execute], ['qemu-monitor-command', 'query-block-jobs']);
    return JSON.stringify({ return: [{ device: 'haven-mirror-vda', 'io-status': 'ok', ...this.#job }] });
  }
}

const stateOf = (job: Record<string, unknown>) =>
  new LibvirtMirror(new JobVirsh(job), async () => true).mirrorState({ domain: 'web', target: 'vda' });

describe('the state of a libvirt domain mirror, from QEMU job', () => {
  it('is synced once ready, with a guest write in flight counted in len', async () => {
    // As QEMU 7.2 reports a write-blocking mirror whose guest writes without pause.
    assert.deepEqual(
      await stateOf({ status: 'ready', ready: true, paused: false, len: 390482944, offset: 390478848 }),
      { state: 'synced' },
    );
  });

  it('is copying before ready, and while paused', async () => {
    assert.deepEqual(
      await stateOf({ status: 'running', ready: false, paused: false, len: 1 << 20, offset: 1 << 19 }),
      { state: 'copying', doneBytes: 1 << 19, totalBytes: 1 << 20, paused: false },
    );
    assert.equal(
      (await stateOf({ status: 'standby', ready: true, paused: true, len: 4096, offset: 4096 })).state,
      'copying',
    );
  });

  it('is failed when a write to the sink failed', async () => {
    assert.deepEqual(
      await stateOf({
        status: 'ready',
        ready: true,
        paused: false,
        len: 4096,
        offset: 4096,
        'io-status': 'failed',
      }),
      { state: 'failed', reason: 'a write to the sink failed (failed)' },
    );
  });
});
