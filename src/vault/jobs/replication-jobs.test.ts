import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Machine, RecoveryPoint, ServerLinkSnapshot } from '../../domain/model.ts';
import type { HostServices, ReplicationStatus } from '../../host/host-services.ts';
import type { LifecycleStepContext } from './lifecycle-job.ts';
import { serverSyncStep } from './replication-jobs.ts';

const status = (server: ServerLinkSnapshot | null): ReplicationStatus => ({
  machineId: 'srv-1',
  brokenDisks: [],
  state: 'streaming',
  progress: 100,
  lagSeconds: 0,
  queuedBytes: 0,
  sentBytes: 0,
  lastError: null,
  server,
});
const leg = {
  diskId: 'disk0',
  sizeBytes: 1 << 30,
  connected: true,
  syncedBytes: null,
  pointsAllowed: false,
  lastWriteAt: null,
};
const point = { id: 'p1' } as RecoveryPoint;

test("a server's first sync: progress in words from awaiting enrolment through md's resync to in sync and the first point", async () => {
  const seen: Array<ServerLinkSnapshot | null> = [
    { state: 'awaiting-enrolment', legs: [], agent: null, problem: null },
    {
      state: 'syncing',
      legs: [{ ...leg, md: 'resyncing', syncedBytes: (1 << 30) / 2 }],
      agent: null,
      problem: null,
    },
    { state: 'in-sync', legs: [{ ...leg, md: 'in-sync', pointsAllowed: true }], agent: null, problem: null },
    { state: 'in-sync', legs: [{ ...leg, md: 'in-sync', pointsAllowed: true }], agent: null, problem: null },
  ];
  const points: RecoveryPoint[][] = [[], [point]];
  const progress: string[] = [];
  let output: Record<string, unknown> = {};
  const host = {
    replication: { status: async () => status(seen.length > 1 ? seen.shift()! : seen[0]!) },
    replica: { listPoints: async () => (points.length > 1 ? points.shift()! : points[0]!) },
  } as unknown as HostServices;
  const ctx = {
    machine: { id: 'srv-1', name: 'db-01', activeHostId: 'h1', recoveryHostId: 'h2' } as Machine,
    host: () => host,
    signal: new AbortController().signal,
    progress: (percent: number, message?: string) => progress.push(`${Math.round(percent)} ${message}`),
    output: async (patch: Record<string, unknown>) => {
      output = { ...output, ...patch };
    },
  } as unknown as LifecycleStepContext<'enable-replication'>;
  await serverSyncStep.run(ctx);
  assert.deepEqual(progress, [
    "0 awaiting the enrolment of the server's agent (haven servers enrolment NAME gives its commands)",
    '50 disk0 md resync 50%',
    '100 in sync (1 leg)',
    '100 in sync; waiting for the first recovery point',
    '100 in sync (1 leg)',
  ]);
  assert.deepEqual(output, { firstRecoveryPoint: point });

  const old = { ...ctx, host: () => ({ ...host, replication: { status: async () => status(null) } }) };
  await assert.rejects(
    serverSyncStep.run(old as unknown as LifecycleStepContext<'enable-replication'>),
    /host of server 'db-01' reports no server link/,
  );
});
