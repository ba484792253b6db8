import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { QmpClient } from '../hypervisor/qmp-client.ts';
import { waitFor } from './replication-test-fixture.ts';

/**
 * Adds the sink's NBD export as node 'haven-sink' and starts QEMU's active
 * mirror (write-blocking) of `device` to it, as job 'haven-mirror'. Returns
 * when the job started, with its BLOCK_JOB_READY awaited from before the start.
 */
export async function startActiveMirror(
  qmp: QmpClient,
  options: {
    device: string;
    socket: string;
    exportName: string;
    reconnectDelay: number;
    readyTimeoutMs: number;
    filterNodeName?: string;
    /** Bytes per dirty-bitmap bit, as the sink compares them. */
    granularity?: number;
  },
): Promise<{ ready: Promise<unknown>; started: number }> {
  await qmp.execute('blockdev-add', {
    driver: 'nbd',
    'node-name': 'haven-sink',
    server: { type: 'unix', path: options.socket },
    export: options.exportName,
    'reconnect-delay': options.reconnectDelay,
  });
  const ready = qmp.waitForEvent('BLOCK_JOB_READY', { timeoutMs: options.readyTimeoutMs });
  const started = Date.now();
  await qmp.execute('blockdev-mirror', {
    'job-id': 'haven-mirror',
    device: options.device,
    target: 'haven-sink',
    sync: 'full',
    'copy-mode': 'write-blocking',
    ...(options.filterNodeName ? { 'filter-node-name': options.filterNodeName } : {}),
    ...(options.granularity ? { granularity: options.granularity } : {}),
  });
  return { ready, started };
}

/**
 * A QEMU without a guest (`-machine none`) holding the raw `image` as block
 * node 'vm-disk': the sink tests' stand-in for a VM, whose writes enter the
 * block layer through HMP `qemu-io` as a guest's would.
 */
export interface ImageQemu {
  qmp: QmpClient;
  /** What QEMU wrote on stderr so far (a healthy run writes nothing). */
  stderr(): string;
  /** `quit`, and waits for the process to end. */
  quit(): Promise<void>;
  /** Ends it whatever its state (cleanup after a failed test). */
  kill(): Promise<void>;
}

export async function startImageQemu(dir: string, image: string): Promise<ImageQemu> {
  const qmpPath = join(dir, 'qmp.sock');
  const child = spawn(
    'qemu-system-x86_64',
    ['-machine', 'none', '-nodefaults', '-display', 'none', '-qmp', `unix:${qmpPath},server=on,wait=off`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  let qmp: QmpClient | null = null;
  try {
    await waitFor('QMP socket', async () => {
      try {
        qmp = await QmpClient.connect(qmpPath, { timeoutMs: 2000 });
        return true;
      } catch {
        return false;
      }
    });
    const connected = qmp as unknown as QmpClient;
    await connected.execute('blockdev-add', {
      driver: 'raw',
      'node-name': 'vm-disk',
      file: { driver: 'file', filename: image, 'aio-max-batch': 0 },
    });
    return {
      qmp: connected,
      stderr: () => stderr,
      quit: async () => {
        await connected.execute('quit').catch(() => {});
        await exited;
      },
      kill: async () => {
        child.kill('SIGKILL');
        await connected.close().catch(() => {});
      },
    };
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
}
