/**
 * The mirror service's decisions against a real disk service (sinks, their
 * journals, NBD over the Unix socket) with a scripted hypervisor mirror in
 * place of QEMU: QEMU's own behaviour is proven by the libvirt end-to-end
 * tests; here the states are forced one by one.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DiskService } from '../disk/index.ts';
import type { ActiveMirrorDriver, ArmMirrorParams, MirrorJobState } from '../hypervisor/active-mirror.ts';
import { NbdClient } from '../nbd/index.ts';
import { hostDiskService } from './host-disk-service.ts';
import { HostStateFile } from './host-state-file.ts';
import { MirrorService } from './mirror-service.ts';

const MiB = 1 << 20;
const DISKS = [
  { diskId: 'vda', target: 'vda' },
  { diskId: 'vdb', target: 'vdb' },
];

/** A hypervisor mirror whose job state the test sets, recording what the service asked of it. */
class ScriptedMirror implements ActiveMirrorDriver {
  readonly states = new Map<string, MirrorJobState>();
  readonly calls: string[] = [];
  /** Every disk's job in this state. */
  set state(state: MirrorJobState) {
    for (const target of DISKS.map((d) => d.target)) this.states.set(target, state);
  }
  async mirrorState({ target }: { target: string }): Promise<MirrorJobState> {
    return this.states.get(target) ?? { state: 'absent' };
  }
  async armMirror(params: ArmMirrorParams): Promise<void> {
    this.calls.push(`arm ${params.target}`);
    this.states.set(params.target, { state: 'copying', doneBytes: 0, totalBytes: 8 * MiB, paused: false });
  }
  async setMirrorPaused({ target, paused }: { target: string; paused: boolean }): Promise<void> {
    this.calls.push(`${paused ? 'pause' : 'resume'} ${target}`);
    const state = this.states.get(target);
    if (state?.state === 'copying') this.states.set(target, { ...state, paused });
  }
  async disarmMirror({ target }: { target: string }): Promise<void> {
    this.calls.push(`disarm ${target}`);
    this.states.set(target, { state: 'absent' });
  }
}

let dir: string;
let core: DiskService;
let client: NbdClient;
const socket = () => join(dir, 'disks.sock');

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-mirror-service-'));
  core = await DiskService.start({ socket: socket() });
  await core.attach('m1.vda', {
    sink: { sizeBytes: 8 * MiB },
    journalDir: join(dir, 'vda.journal'),
    journalCapacityBytes: 4 * MiB,
    journalSegmentBytes: 512 << 10,
  });
  await core.attach('m1.vdb', {
    sink: { sizeBytes: 8 * MiB },
    journalDir: join(dir, 'vdb.journal'),
    journalCapacityBytes: 4 * MiB,
    journalSegmentBytes: 512 << 10,
  });
  client = await NbdClient.connect({ path: socket() }, { exportName: 'm1.vda' });
});

after(async () => {
  await client?.disconnect().catch(() => {});
  await core?.close();
  await rm(dir, { recursive: true, force: true });
});

test('arms, pauses the copy while the journal waits for the sender, declares the sink ready once synced, cuts points', async () => {
  const driver = new ScriptedMirror();
  const state = await HostStateFile.load(join(dir, 'state.json'));
  const markers: string[] = [];
  const service = new MirrorService({
    driver,
    core,
    disks: {
      insertMarker: async (params) => {
        markers.push(params.type);
        return hostDiskService(core, { dataDir: dir }).insertMarker(params);
      },
    },
    socket: socket(),
    state,
    tickMs: 60_000,
    pointIntervalMs: 0,
  });
  try {
    const armed = await service.protect({ machineId: 'm1', domain: 'vm1', disks: DISKS });
    assert.deepEqual(driver.calls, ['arm vda', 'arm vdb']);
    assert.equal(armed.state, 'syncing');
    assert.equal(armed.disks[0]!.state, 'copying');

    // QEMU's copy fills the journal past three quarters: the copy is paused, and the status says why.
    await client.write(0, Buffer.alloc(3.5 * MiB, 7));
    let status = await tick(service);
    // Only the disk whose journal is full waits.
    assert.deepEqual(driver.calls, ['arm vda', 'arm vdb', 'pause vda']);
    assert.equal(status.disks[0]!.waitingForSender, true);
    // The sender shipped it: the copy resumes.
    const backend = core.backend('m1.vda');
    await backend.journal.trimThrough(backend.journal.status.writtenSeq);
    status = await tick(service);
    assert.deepEqual(driver.calls, ['arm vda', 'arm vdb', 'pause vda', 'resume vda']);
    assert.equal(status.disks[0]!.waitingForSender, false);

    // Synced: the sink becomes ready and a point is cut; nothing of it is shown armed before.
    assert.equal(core.list()[0]!.sink?.readySeq, null);
    driver.state = { state: 'synced' };
    status = await tick(service);
    assert.equal(status.state, 'armed');
    assert.notEqual(core.list()[0]!.sink?.readySeq, null);
    // One cut for both disks: the same marker in each sink's journal, at one instant (writes held).
    assert.equal(markers.length, 1);
    const lastMarker = async (name: string) => {
      const journal = core.backend(name).journal;
      let found: string | undefined;
      for await (const r of journal.records(journal.status.firstSeq))
        if (r.kind === 'marker') found = r.marker?.id;
      return found;
    };
    assert.ok(await lastMarker('m1.vda'));
    assert.equal(await lastMarker('m1.vda'), await lastMarker('m1.vdb'));

    // The job failed (the sink was away too long): not ready at once, then armed again.
    driver.state = { state: 'failed', reason: 'a write to the sink failed' };
    status = await tick(service);
    assert.deepEqual(driver.calls.slice(-4), ['disarm vda', 'arm vda', 'disarm vdb', 'arm vdb']);
    assert.equal(core.list()[0]!.sink?.readySeq, null);
    assert.equal(status.state, 'not-armed');
    assert.match(status.disks[0]!.lastRearm?.reason ?? '', /mirror failed: a write to the sink failed/);
  } finally {
    await service.close();
  }
});

/** One pass of the service (its timer is slowed down so the test drives it). */
async function tick(service: MirrorService) {
  await service.protect({ machineId: 'm1', domain: 'vm1', disks: DISKS });
  return service.status({ machineId: 'm1' });
}
