import type { QmpClient } from '../hypervisor/qmp-client.ts';

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
