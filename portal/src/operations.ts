import type { LifecycleOperation } from '../../src/domain/lifecycle.ts';
import type { RecoveryPoint } from '../../src/domain/model.ts';
import { OPERATION_TITLES } from '../../src/text/job-title.ts';

/** How each lifecycle operation is named and explained in the portal (SPEC §2). */
export const OPERATION_TEXT: Record<LifecycleOperation, { title: string; explain: string }> = {
  'enable-replication': {
    title: OPERATION_TITLES['enable-replication'],
    explain: 'Copies every disk to the recovery host (initial replication); after that only changes flow.',
  },
  'disable-replication': {
    title: OPERATION_TITLES['disable-replication'],
    explain:
      'Stops replicating this machine and removes its recovery points. The machine itself keeps running.',
  },
  'test-failover': {
    title: OPERATION_TITLES['test-failover'],
    explain:
      'Starts a copy of the machine at the recovery site on an isolated test network. Replication goes on and production is untouched.',
  },
  'cleanup-test-failover': {
    title: OPERATION_TITLES['cleanup-test-failover'],
    explain: "Removes the test copy and records the drill's notes.",
  },
  failover: {
    title: OPERATION_TITLES.failover,
    explain:
      'Starts the machine at the recovery site from the chosen recovery point. Data written after that point is lost.',
  },
  'planned-failover': {
    title: OPERATION_TITLES['planned-failover'],
    explain:
      'Shuts the source down, sends all unsynchronised data, then starts the recovery machine. No data is lost.',
  },
  failback: {
    title: OPERATION_TITLES.failback,
    explain: 'A planned failover from the recovery site back to the primary site.',
  },
  'complete-failover': {
    title: OPERATION_TITLES['complete-failover'],
    explain: 'Shuts the recovery machine down, sends the last changes and starts the primary machine.',
  },
  'change-recovery-point': {
    title: OPERATION_TITLES['change-recovery-point'],
    explain: 'Restarts the failed-over machine from another recovery point (possible until commit).',
  },
  commit: {
    title: OPERATION_TITLES.commit,
    explain:
      'Completes the failover and deletes the other recovery points: the point can no longer be changed.',
  },
  reprotect: {
    title: OPERATION_TITLES.reprotect,
    explain:
      'Replicates the running machine back to the other site. The machine there stays powered off meanwhile.',
  },
  resync: {
    title: OPERATION_TITLES.resync,
    explain: 'Brings the replica back in step with the machine after replication fell behind or broke.',
  },
};

/** Failover of a reverse-protected machine runs the other way: it is an unplanned failback. */
export const UNPLANNED_FAILBACK_TEXT = {
  title: 'Failover',
  explain:
    'Unplanned failback: starts the machine at the primary site from the chosen recovery point, without synchronising first. Data written at the recovery site after that point is lost.',
};

export type RecoveryPointOption =
  | 'latest'
  | 'latest-processed'
  | 'latest-app-consistent'
  | 'latest-multi-machine-processed'
  | 'latest-multi-machine-app-consistent'
  | 'custom';

/** The recovery point options and their RPO/RTO trade-off (SPEC §3). */
export const POINT_OPTIONS: { value: RecoveryPointOption; title: string; tradeOff: string; group?: true }[] =
  [
    {
      value: 'latest',
      title: 'Latest',
      tradeOff:
        'Processes everything the recovery site has received first, then fails over to it: lowest RPO (least data lost), longer RTO (waits for processing).',
    },
    {
      value: 'latest-processed',
      title: 'Latest processed',
      tradeOff:
        'The newest point already processed, with no processing wait: lowest RTO; data received but not yet processed is lost.',
    },
    {
      value: 'latest-app-consistent',
      title: 'Latest app-consistent',
      tradeOff:
        'The newest point taken with applications quiesced: applications start cleanly, but the point is older (higher RPO).',
    },
    {
      value: 'latest-multi-machine-processed',
      title: 'Latest multi-machine processed',
      tradeOff:
        'The newest processed point shared by every machine of the consistency group: they all start from one moment.',
      group: true,
    },
    {
      value: 'latest-multi-machine-app-consistent',
      title: 'Latest multi-machine app-consistent',
      tradeOff: 'The newest app-consistent point shared by the whole consistency group.',
      group: true,
    },
    {
      value: 'custom',
      title: 'Custom',
      tradeOff: 'Any listed point: pick one on the timeline or in the list.',
    },
  ];

/** One machine's points newest first: by their place in its history (sequence), never by id as text. */
export function newestFirst(
  a: Pick<RecoveryPoint, 'sequence' | 'time'>,
  b: Pick<RecoveryPoint, 'sequence' | 'time'>,
): number {
  return b.sequence - a.sequence || b.time.localeCompare(a.time);
}
