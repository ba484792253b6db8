/**
 * One consistent cut across the members of a consistency group, even when
 * they run on different hosts: every host holds new writes of its members'
 * disks (phase 1); once all of them hold, each appends the same group marker
 * (phase 2); then all let the writes go (phase 3, also after any failure).
 * While every member is held at once, no member can write an effect whose
 * cause (an acknowledged write of another member) is not already before that
 * member's marker: the cut holds no effect without its cause.
 *
 * Each host bounds its own hold (it releases by itself after `holdTimeoutMs`),
 * and the vault gives up on a host that does not answer within the same
 * bound, so a stuck host or a lost vault never freezes machines for longer.
 */
import { randomUUID } from 'node:crypto';
import type { RecoveryPointType } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { DiskService, WriteHold } from '../../host/host-services.ts';

export type CutDisk = Pick<DiskService, 'holdWrites' | 'insertMarkerHeld' | 'releaseWrites'>;

/** The members on one host, and that host's disk service. */
export interface CutParticipant {
  hostId: string;
  machineIds: string[];
  disk: CutDisk;
}

export interface GroupCutOptions {
  participants: CutParticipant[];
  type?: RecoveryPointType;
  /** Longest writes stay held on any host (default 1000 ms). */
  holdTimeoutMs?: number;
  groupPointId?: string;
}

export interface GroupCut {
  groupPointId: string;
  type: RecoveryPointType;
  /** Each host's marker time. */
  markers: Array<{ hostId: string; time: string }>;
  /** From the first hold asked to the last release answered, as the vault saw it. */
  elapsedMs: number;
}

export const DEFAULT_HOLD_TIMEOUT_MS = 1000;

/** Rejects when `promise` takes longer than `ms`; the promise itself runs on. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new HavenError('unreachable', `${what} did not answer within ${ms} ms`, { timeoutMs: ms })),
      ms,
    );
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

export async function takeGroupCut(options: GroupCutOptions): Promise<GroupCut> {
  const participants = options.participants.filter((p) => p.machineIds.length > 0);
  if (participants.length === 0) {
    throw new HavenError('validation_failed', 'a group cut needs at least one member machine', {
      field: 'participants',
    });
  }
  const type = options.type ?? 'crash-consistent';
  const holdTimeoutMs = options.holdTimeoutMs ?? DEFAULT_HOLD_TIMEOUT_MS;
  const groupPointId = options.groupPointId ?? randomUUID();
  const started = Date.now();
  const answered = new Set<number>();
  const holds = participants.map((p, i) =>
    p.disk.holdWrites({ machineIds: p.machineIds, timeoutMs: holdTimeoutMs }).finally(() => answered.add(i)),
  );
  // A hold that answers late (after the vault gave up) is released as soon as it answers.
  const release = (p: CutParticipant, hold: Promise<WriteHold>): Promise<unknown> =>
    hold.then(
      (h) =>
        within(p.disk.releaseWrites({ holdId: h.holdId }), holdTimeoutMs, `host '${p.hostId}' releasing`),
      () => undefined,
    );
  try {
    const held = await Promise.all(
      holds.map((hold, i) => within(hold, holdTimeoutMs, `host '${participants[i]!.hostId}' holding writes`)),
    );
    // Whatever is left of the bound: a marker after a host released by itself would not be one instant.
    const left = Math.max(1, holdTimeoutMs - (Date.now() - started));
    const markers = await Promise.all(
      participants.map(async (p, i) => {
        const marker = await within(
          p.disk.insertMarkerHeld({ holdId: held[i]!.holdId, type, groupPointId }),
          left,
          `host '${p.hostId}' adding marker ${groupPointId}`,
        );
        return { hostId: p.hostId, time: marker.time };
      }),
    );
    return { groupPointId, type, markers, elapsedMs: Date.now() - started };
  } finally {
    const releases = participants.map((p, i) => ({ i, done: release(p, holds[i]!).catch(() => undefined) }));
    // Wait for the hosts that answered; the others release by themselves (or here, when they answer).
    await Promise.all(releases.filter((r) => answered.has(r.i)).map((r) => r.done));
  }
}
