import type { ReplicationStatus } from '../../host/host-services.ts';

/** Bytes in MiB with one decimal, as job messages show sizes. */
export function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}

/** A sync's progress as a job step shows it: percent (never 100 before it is done) and bytes done of total. */
export function copyProgress(status: ReplicationStatus): { percent: number; text: string } {
  const copy = status.copy;
  if (!copy) return { percent: 0, text: 'waiting for the sender' };
  return {
    percent: Math.min(99, Math.floor((100 * copy.doneBytes) / Math.max(1, copy.totalBytes))),
    text: `${mib(copy.doneBytes)} of ${mib(copy.totalBytes)} MiB done`,
  };
}
