import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { HavenError } from '../errors/index.ts';
import { readOptionalText, readOptionalTextSync } from '../storage/optional-file.ts';
import { PRIVATE_FILE_MODE } from '../storage/private-files.ts';

export type SyncKind = 'initial' | 'bitmap' | 'full' | 'hash';

/** The syncs that can be asked for once a disk is replicated (the initial copy comes on its own). */
export type ResyncKind = Exclude<SyncKind, 'initial'>;

/** A resync request of one disk: answered once `resyncRequests.done` of the same sender reaches `request`. */
export interface ResyncTicket {
  /** The disk's replicator instance: a restarted sender forgets requests, so the ticket is asked again. */
  senderId: string;
  request: number;
}

/**
 * What the sender must remember across its own restarts for one disk: whether
 * the replica was ever completely copied, and which copy was interrupted (it
 * is redone from scratch). The receiver's durable sequence alone cannot tell
 * "never copied" from "copied an idle disk".
 */
export interface SenderDiskState {
  synced: boolean;
  sync: { kind: SyncKind } | null;
}

export async function readSenderState(path: string): Promise<SenderDiskState> {
  return parseSenderState(path, await readOptionalText(path));
}

/** The same, synchronously: a replicator knows at once whether a copy is due (see its status). */
export function readSenderStateSync(path: string): SenderDiskState {
  return parseSenderState(path, readOptionalTextSync(path));
}

function parseSenderState(path: string, text: string | null): SenderDiskState {
  if (text === null) return { synced: false, sync: null };
  try {
    const parsed = JSON.parse(text) as SenderDiskState;
    if (typeof parsed.synced !== 'boolean') throw new Error('no synced flag');
    return { synced: parsed.synced, sync: parsed.sync ?? null };
  } catch (e) {
    throw new HavenError(
      'internal',
      `replication state file '${path}' is damaged (${(e as Error).message}); delete it to force a full resync`,
      {
        path,
      },
    );
  }
}

/** Replaces the state file atomically and durably (temporary file, fsync, rename, directory fsync). */
export async function writeSenderState(path: string, state: SenderDiskState): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w', PRIVATE_FILE_MODE);
  try {
    await fh.writeFile(JSON.stringify(state));
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
