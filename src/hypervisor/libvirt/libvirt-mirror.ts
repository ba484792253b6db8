import { setTimeout as sleep } from 'node:timers/promises';
import { HavenError } from '../../errors/index.ts';
import {
  type ActiveMirrorDriver,
  type ArmMirrorParams,
  type MirrorJobState,
  mirrorNodeNames,
} from '../active-mirror.ts';
import type { Virsh } from './virsh.ts';
import { childOf, childrenOf, parseXml } from './xml.ts';

interface QmpBlockJob {
  device: string;
  len: number;
  offset: number;
  ready: boolean;
  paused: boolean;
  status: string;
  'io-status'?: string;
}

interface QmpJob {
  id: string;
  status: string;
  error?: string;
}

interface QmpBlockDevice {
  qdev?: string;
  inserted?: { 'node-name': string };
}

const CANCEL_WAIT_MS = 30_000;

/**
 * QEMU's active mirror on a libvirt domain, through libvirt's QMP passthrough
 * (`virsh qemu-monitor-command`). `virsh blockcopy` cannot re-arm a mirror
 * without a full copy that zeroes the target, and libvirt 9.0 gives its NBD
 * destinations no reconnect delay; the passthrough does both, at the price of
 * libvirt marking the domain tainted ("custom-monitor" in its log).
 */
export class LibvirtMirror implements ActiveMirrorDriver {
  readonly #virsh: Virsh;
  readonly #running: (domain: string) => Promise<boolean>;

  constructor(virsh: Virsh, running: (domain: string) => Promise<boolean>) {
    this.#virsh = virsh;
    this.#running = running;
  }

  async mirrorState({ domain, target }: { domain: string; target: string }): Promise<MirrorJobState> {
    if (!(await this.#running(domain))) return { state: 'domain-off' };
    const names = mirrorNodeNames(target);
    const job = (await this.#qmp<QmpBlockJob[]>(domain, 'query-block-jobs')).find(
      (j) => j.device === names.job,
    );
    if (!job) return { state: 'absent' };
    if (job.status === 'concluded' || job.status === 'aborting' || job.status === 'null') {
      const ended = (await this.#qmp<QmpJob[]>(domain, 'query-jobs')).find((j) => j.id === names.job);
      return { state: 'failed', reason: ended?.error ?? `the mirror job ended (${job.status})` };
    }
    const io = job['io-status'] ?? 'ok';
    if (io !== 'ok') return { state: 'failed', reason: `a write to the sink failed (${io})` };
    // Ready is the synced state of a write-blocking mirror: every write reaches the sink before it
    // completes. Not offset === len: QEMU counts the guest's writes in flight into len, so a
    // domain that keeps writing shows a few KiB "remaining" at nearly every query.
    if (job.ready && !job.paused) return { state: 'synced' };
    return { state: 'copying', doneBytes: job.offset, totalBytes: job.len, paused: job.paused };
  }

  async setMirrorPaused({ domain, target, paused }: { domain: string; target: string; paused: boolean }) {
    const { job } = mirrorNodeNames(target);
    await this.#qmp(domain, paused ? 'block-job-pause' : 'block-job-resume', { device: job });
  }

  async armMirror(params: ArmMirrorParams): Promise<void> {
    const { domain, target, sink } = params;
    const names = mirrorNodeNames(target);
    const state = await this.mirrorState({ domain, target });
    if (state.state === 'domain-off') {
      throw new HavenError(
        'operation_not_allowed',
        `domain '${domain}' is not running: its disk ${target} is mirrored only while QEMU runs`,
        { machine: domain, state: 'shut-off', allowed: ['start'] },
      );
    }
    if (state.state === 'copying' || state.state === 'synced') {
      throw new HavenError(
        'conflict',
        `disk ${target} of domain '${domain}' is already mirrored by Haven (${state.state})`,
        { machine: domain, target, state: state.state },
      );
    }
    await this.#removeLeftovers(domain, target);
    const node = await this.#diskNode(domain, target);
    await this.#qmp(domain, 'blockdev-add', {
      driver: 'nbd',
      'node-name': names.sink,
      server: { type: 'unix', path: sink.socket },
      export: sink.exportName,
      'reconnect-delay': params.reconnectDelaySeconds,
    });
    try {
      await this.#qmp(domain, 'blockdev-mirror', {
        'job-id': names.job,
        device: node,
        target: names.sink,
        sync: 'full',
        'copy-mode': 'write-blocking',
        'filter-node-name': names.filter,
        granularity: params.granularityBytes,
        // A failed write ends the job (the guest carries on with its own disk); Haven re-arms it.
        'on-target-error': 'report',
        'auto-dismiss': false,
      });
    } catch (error) {
      await this.#qmp(domain, 'blockdev-del', { 'node-name': names.sink }).catch(() => {});
      throw error;
    }
  }

  async disarmMirror({ domain, target }: { domain: string; target: string }): Promise<void> {
    if (!(await this.#running(domain))) return;
    const names = mirrorNodeNames(target);
    const job = (await this.#qmp<QmpBlockJob[]>(domain, 'query-block-jobs')).find(
      (j) => j.device === names.job,
    );
    if (job && job.status !== 'concluded') {
      // A ready mirror cancelled ends without a pivot: the domain keeps its own disk.
      await this.#qmp(domain, 'block-job-cancel', { device: names.job, force: true });
      const deadline = Date.now() + CANCEL_WAIT_MS;
      for (;;) {
        const now = (await this.#qmp<QmpBlockJob[]>(domain, 'query-block-jobs')).find(
          (j) => j.device === names.job,
        );
        if (!now || now.status === 'concluded') break;
        if (Date.now() > deadline) {
          throw new HavenError(
            'internal',
            `the mirror of disk ${target} of domain '${domain}' did not end within ${CANCEL_WAIT_MS / 1000} s (${now.status})`,
            { machine: domain, target, status: now.status },
          );
        }
        await sleep(100);
      }
    }
    await this.#removeLeftovers(domain, target);
  }

  /** An ended job and the sink node it wrote to. */
  async #removeLeftovers(domain: string, target: string): Promise<void> {
    const names = mirrorNodeNames(target);
    const ended = (await this.#qmp<QmpJob[]>(domain, 'query-jobs')).find((j) => j.id === names.job);
    if (ended?.status === 'concluded') await this.#qmp(domain, 'job-dismiss', { id: names.job });
    const nodes = await this.#qmp<Array<{ 'node-name': string }>>(domain, 'query-named-block-nodes', {
      flat: true,
    });
    if (nodes.some((n) => n['node-name'] === names.sink)) {
      await this.#qmp(domain, 'blockdev-del', { 'node-name': names.sink });
    }
  }

  /**
   * The block node the guest's device writes to: libvirt names the device by
   * the disk's alias in the live definition, QEMU reports the node under it.
   */
  async #diskNode(domain: string, target: string): Promise<string> {
    const live = parseXml(await this.#virsh.run(['dumpxml', domain], { domain }));
    const disk = childrenOf(childOf(live, 'devices'), 'disk').find(
      (d) => childOf(d, 'target')?.attributes.dev === target,
    );
    const alias = childOf(disk, 'alias')?.attributes.name;
    if (!disk || !alias) {
      throw new HavenError('not_found', `domain '${domain}' has no disk ${target}`, {
        machine: domain,
        target,
      });
    }
    const device = (await this.#qmp<QmpBlockDevice[]>(domain, 'query-block')).find((b) =>
      b.qdev?.includes(`/${alias}/`),
    );
    const node = device?.inserted?.['node-name'];
    if (!node) {
      throw new HavenError(
        'not_available',
        `QEMU of domain '${domain}' shows no medium on disk ${target} (device ${alias})`,
        { machine: domain, target },
      );
    }
    return node;
  }

  async #qmp<T = unknown>(domain: string, command: string, args?: Record<string, unknown>): Promise<T> {
    const request = JSON.stringify(
      args === undefined ? { execute: command } : { execute: command, arguments: args },
    );
    const out = await this.#virsh.run(['qemu-monitor-command', domain, request], { domain });
    const reply = JSON.parse(out) as { return?: T; error?: { class: string; desc: string } };
    if (reply.error) {
      throw new HavenError('internal', `QEMU of domain '${domain}' refused ${command}: ${reply.error.desc}`, {
        machine: domain,
        command,
        qmpClass: reply.error.class,
      });
    }
    return reply.return as T;
  }
}
